package main

import (
	"math"
	"os"
	"runtime/debug"

	"orderflow/configuration"
)

// limitMemory sets the process's soft memory limit to runtime.memoryLimitMiB, unless
// GOMEMLIMIT is set: the runtime has applied that one, and it wins (an empty one is no
// setting, for the runtime too). 0 leaves the runtime's default, no limit.
func limitMemory(cfg *configuration.Config) {
	if os.Getenv("GOMEMLIMIT") != "" || cfg.Runtime.MemoryLimitMiB == 0 {
		return
	}
	debug.SetMemoryLimit(cfg.Runtime.MemoryLimitMiB << 20)
}

// memoryLimit is the soft memory limit in force, for the log: its MiB, or "none".
func memoryLimit() any {
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		return "none"
	}
	return limit >> 20
}
