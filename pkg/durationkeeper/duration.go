package durationkeeper

import (
	"fmt"
	"regexp"
	"strconv"
	"time"
)

// maxDurationRE is Queue.spec.maxDuration's pattern with a group per unit.
var maxDurationRE = regexp.MustCompile(`^(?:0|(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?)$`)

var units = []time.Duration{365 * 24 * time.Hour, 7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second, time.Millisecond}

// ParseMaxDuration reads a Queue's maxDuration ("2h", "1d2h30m", "1w", "500ms"; a year is 365
// days). "" and "0" mean no limit and return 0.
func ParseMaxDuration(s string) (time.Duration, error) {
	m := maxDurationRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("maxDuration %q: want a sequence of <n>y, <n>w, <n>d, <n>h, <n>m, <n>s, <n>ms in that order, or 0", s)
	}
	var d time.Duration
	for i, u := range units {
		if m[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(m[i+1], 10, 64)
		if err != nil || n > int64(1<<62)/int64(u) {
			return 0, fmt.Errorf("maxDuration %q is too long", s)
		}
		d += time.Duration(n) * u
	}
	return d, nil
}
