package main

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuTimes are CPU times consumed so far, summed over the cores: by the whole machine
// (every process, /proc/stat), by the api process, by this benchmark process (the load
// generator), and by the live PostgreSQL and RabbitMQ processes (a process that exits
// within a phase, such as a pgbench connection's backend, takes its time with it, so these
// two are only read for the API's phases, whose pool keeps its connections). They read
// zero where /proc does not exist.
type cpuTimes struct {
	machine, api, self, postgres, rabbitmq time.Duration
}

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

func readCPU(apiPid int) cpuTimes {
	c := cpuTimes{machine: machineCPU(), api: processCPU(strconv.Itoa(apiPid)), self: processCPU("self")}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		comm, err := os.ReadFile("/proc/" + p.Name() + "/comm")
		if err != nil {
			continue
		}
		switch strings.TrimSpace(string(comm)) {
		case "postgres":
			c.postgres += processCPU(p.Name())
		case "beam.smp":
			c.rabbitmq += processCPU(p.Name())
		}
	}
	return c
}

func (c cpuTimes) sub(d cpuTimes) cpuTimes {
	return cpuTimes{machine: c.machine - d.machine, api: c.api - d.api, self: c.self - d.self,
		postgres: c.postgres - d.postgres, rabbitmq: c.rabbitmq - d.rabbitmq}
}

func (c cpuTimes) add(d cpuTimes) cpuTimes {
	return cpuTimes{machine: c.machine + d.machine, api: c.api + d.api, self: c.self + d.self,
		postgres: c.postgres + d.postgres, rabbitmq: c.rabbitmq + d.rabbitmq}
}

// cpuPerOp is the CPU time of one order (or one pgbench transaction), in milliseconds.
type cpuPerOp struct {
	Machine float64 `json:"machine"`
	// The parts of Machine: the api process, the load generator, the PostgreSQL and
	// RabbitMQ processes, and the rest (the kernel's own work, other processes, pgbench's
	// client). For pgbench, whose backends exit with their CPU time, all is in Rest.
	API           float64 `json:"api"`
	LoadGenerator float64 `json:"loadGenerator"`
	PostgreSQL    float64 `json:"postgresql"`
	RabbitMQ      float64 `json:"rabbitmq"`
	Rest          float64 `json:"rest"`
}

func (c cpuTimes) perOp(ops int) *cpuPerOp {
	if ops == 0 || c.machine <= 0 {
		return nil
	}
	per := func(d time.Duration) float64 { return ms(d) / float64(ops) }
	if c.api == 0 { // a pgbench phase
		return &cpuPerOp{Machine: per(c.machine), Rest: per(c.machine)}
	}
	return &cpuPerOp{Machine: per(c.machine), API: per(c.api), LoadGenerator: per(c.self),
		PostgreSQL: per(c.postgres), RabbitMQ: per(c.rabbitmq),
		Rest: per(c.machine - c.api - c.self - c.postgres - c.rabbitmq)}
}

// machineCPU is the busy time of every core: user, nice, system, irq, softirq and steal.
func machineCPU() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(fields) < 9 || fields[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, _ := strconv.ParseInt(fields[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * clockTick
}

// processCPU is the user and system time of a process (all its threads).
func processCPU(pid string) time.Duration {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name may contain spaces; the fields after it are fixed.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * clockTick
}
