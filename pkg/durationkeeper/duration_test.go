package durationkeeper

import (
	"testing"
	"time"
)

func TestParseMaxDuration(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "", want: 0},
		{in: "0", want: 0},
		{in: "10s", want: 10 * time.Second},
		{in: "2h", want: 2 * time.Hour},
		{in: "1d2h30m", want: 26*time.Hour + 30*time.Minute},
		{in: "1w", want: 7 * 24 * time.Hour},
		{in: "1y", want: 365 * 24 * time.Hour},
		{in: "5ms", want: 5 * time.Millisecond},
		{in: "1m5ms", want: time.Minute + 5*time.Millisecond},
		{in: "1h1m1s1ms", want: time.Hour + time.Minute + time.Second + time.Millisecond},
		{in: "30m2h", wantErr: true}, // units out of order
		{in: "2 h", wantErr: true},
		{in: "1.5h", wantErr: true},
		{in: "-1h", wantErr: true},
		{in: "00", wantErr: true},
		{in: "99999999999999999999y", wantErr: true},
	} {
		got, err := ParseMaxDuration(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseMaxDuration(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && got != tc.want {
			t.Errorf("ParseMaxDuration(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
