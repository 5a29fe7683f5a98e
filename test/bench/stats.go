package main

import (
	"math"
	"slices"
	"time"
)

// sample collects durations and answers percentiles by nearest rank.
type sample struct{ d []time.Duration }

func (s *sample) add(d time.Duration) { s.d = append(s.d, d) }

func (s *sample) len() int { return len(s.d) }

// percentile returns the nearest-rank p-th percentile (0 < p <= 100), or 0
// for an empty sample.
func (s *sample) percentile(p float64) time.Duration {
	if len(s.d) == 0 {
		return 0
	}
	if !slices.IsSorted(s.d) {
		slices.Sort(s.d)
	}
	rank := int(math.Ceil(p / 100 * float64(len(s.d))))
	rank = min(max(rank, 1), len(s.d))
	return s.d[rank-1]
}

// micros turns a duration into fractional microseconds, the unit latency
// figures are reported in.
func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// median returns the median of xs (mean of the middle two for an even
// count), or 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// rate is count per second over d.
func rate(count int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(count) / d.Seconds()
}

// cpuMeter measures the process CPU time spent per operation over a phase.
type cpuMeter struct{ start time.Duration }

func startCPU() cpuMeter { return cpuMeter{cpuTime()} }

// per returns the CPU time used since start divided by ops.
func (m cpuMeter) per(ops int) time.Duration {
	if ops <= 0 {
		return 0
	}
	return (cpuTime() - m.start) / time.Duration(ops)
}
