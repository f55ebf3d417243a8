package component

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"
)

// processStart is when this process was executed, to within the kernel's 10 ms clock tick
// (so that the timeline counts Go's and the upstream packages' initialisation too), or now
// if /proc cannot tell.
func processStart() time.Time {
	now := time.Now()
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return now
	}
	uptime, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return now
	}
	// Field 22, starttime, in clock ticks after boot; the command name (field 2) may hold
	// spaces, so count from its closing parenthesis.
	rest := stat[bytes.LastIndexByte(stat, ')')+1:]
	fields := strings.Fields(string(rest))
	if len(fields) < 20 {
		return now
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		return now
	}
	up := strings.Fields(string(uptime))
	if len(up) == 0 {
		return now
	}
	upSeconds, err := strconv.ParseFloat(up[0], 64)
	if err != nil {
		return now
	}
	// USER_HZ is 100 on every architecture Linux runs k1s on.
	const userHZ = 100
	age := time.Duration((upSeconds - float64(ticks)/userHZ) * float64(time.Second))
	if age < 0 {
		return now
	}
	return now.Add(-age)
}
