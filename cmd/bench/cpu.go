package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// cpuTimes are CPU times consumed so far, summed over the cores: by the whole machine
// (every process, /proc/stat), by the api process, by this benchmark process (the load
// generator) and by its ended children (pgbench), and by PostgreSQL and RabbitMQ (their
// processes, and the ended ones they reaped: a backend whose connection closed). They read
// zero where /proc does not exist.
type cpuTimes struct {
	machine, api, self, children, postgres, rabbitmq time.Duration
}

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

func readCPU(apiPid int) cpuTimes {
	c := cpuTimes{machine: machineCPU(), api: processCPU(strconv.Itoa(apiPid))}
	c.self, c.children = processCPU("self"), reapedCPU("self")
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
			c.postgres += processCPU(p.Name()) + reapedCPU(p.Name())
		case "beam.smp":
			c.rabbitmq += processCPU(p.Name()) + reapedCPU(p.Name())
		}
	}
	return c
}

func (c cpuTimes) sub(d cpuTimes) cpuTimes {
	return cpuTimes{machine: c.machine - d.machine, api: c.api - d.api, self: c.self - d.self,
		children: c.children - d.children, postgres: c.postgres - d.postgres, rabbitmq: c.rabbitmq - d.rabbitmq}
}

func (c cpuTimes) add(d cpuTimes) cpuTimes {
	return cpuTimes{machine: c.machine + d.machine, api: c.api + d.api, self: c.self + d.self,
		children: c.children + d.children, postgres: c.postgres + d.postgres, rabbitmq: c.rabbitmq + d.rabbitmq}
}

// cpuPerOp is the CPU time of one order (or one pgbench transaction), in milliseconds.
type cpuPerOp struct {
	Machine float64 `json:"machine"`
	// The parts of Machine: the api process, the load generator (this process, or pgbench),
	// PostgreSQL, RabbitMQ, and the rest (the kernel's own work, other processes).
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
	gen := c.self + c.children
	return &cpuPerOp{Machine: per(c.machine), API: per(c.api), LoadGenerator: per(gen),
		PostgreSQL: per(c.postgres), RabbitMQ: per(c.rabbitmq),
		Rest: per(c.machine - c.api - gen - c.postgres - c.rabbitmq)}
}

// busy is how busy a load of opsPerSecond kept the machine's cores at c per op, in percent
// of all of them: 50% is one core of two.
func (c *cpuPerOp) busy(opsPerSecond float64) string {
	return fmt.Sprintf("%.0f%%", c.Machine*opsPerSecond/(10*float64(numCPU()))) // ms per second per core, in %
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
func processCPU(pid string) time.Duration { return statTimes(pid, 11) }

// reapedCPU is the user and system time of a process's ended and reaped children.
func reapedCPU(pid string) time.Duration { return statTimes(pid, 13) }

// statTimes adds two consecutive clock-tick fields of /proc/<pid>/stat, counted from the
// field after the command name (11 and 12: utime, stime; 13 and 14: cutime, cstime).
func statTimes(pid string, i int) time.Duration {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name may contain spaces; the fields after it are fixed.
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) <= i+1 {
		return 0
	}
	a, _ := strconv.ParseInt(fields[i], 10, 64)
	b, _ := strconv.ParseInt(fields[i+1], 10, 64)
	return time.Duration(a+b) * clockTick
}
