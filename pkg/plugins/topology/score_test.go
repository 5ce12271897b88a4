package topology

import (
	"slices"
	"testing"
)

// normalize: the best interconnect wins first; among nodes offering it, the fullest; a node that
// cannot hold the pod scores 0.
func TestNormalizeQualityThenFullness(t *testing.T) {
	raw := func(quality, full int64) int64 { return quality<<fullnessBits | full }
	for _, tc := range []struct {
		name string
		in   []int64
		want []int64
	}{
		{"equal quality: fullest first", []int64{raw(0, 2), raw(0, 15), raw(0, 8)}, []int64{56, 100, 76}},
		{"quality beats fullness", []int64{raw(10, 1), raw(5, 15)}, []int64{53, 24}},
		{"cannot hold", []int64{0, raw(3, 4)}, []int64{0, 63}},
	} {
		got := normalize(tc.in, 100)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: normalize(%v) = %v, want %v", tc.name, tc.in, got, tc.want)
		}
	}
}

// Property: for any raw scores, a node offering strictly better quality scores strictly higher,
// and among equal quality a fuller node never scores lower.
func TestNormalizeOrderProperty(t *testing.T) {
	for seed := int64(1); seed < 2000; seed++ {
		r := seed
		next := func(n int64) int64 {
			r = (r*6364136223846793005 + 1442695040888963407) & (1<<62 - 1)
			return (r >> 20) % n
		}
		var in []int64
		for range 2 + next(6) {
			in = append(in, next(4)<<fullnessBits|(1+next(fullnessMax)))
		}
		out := normalize(in, 100)
		for i := range in {
			for j := range in {
				qi, qj := in[i]>>fullnessBits, in[j]>>fullnessBits
				if qi > qj && out[i] <= out[j] {
					t.Fatalf("seed %d: better quality %v scored %d <= %d for %v", seed, in, out[i], out[j], in[j])
				}
				if qi == qj && in[i]&fullnessMax > in[j]&fullnessMax && out[i] < out[j] {
					t.Fatalf("seed %d: fuller node of equal quality scored lower: %v -> %v", seed, in, out)
				}
			}
		}
	}
}
