package main

import "testing"

func TestColdRange(t *testing.T) {
	for _, c := range []struct {
		network string
		k, n    int
		want    string
	}{
		{"127.16.0.0/12", 0, 5000, "127.16.0.0-127.16.19.135"},
		{"127.16.0.0/12", 1, 5000, "127.16.19.136-127.16.39.15"},
		{"127.32.0.0/12", 2, 256, "127.32.2.0-127.32.2.255"},
		// Past the end of the network: the first block again.
		{"127.16.0.0/12", 1 << 20, 1, "127.16.0.0-127.16.0.0"},
		{"127.16.0.0/12", 209, 5000, "127.16.0.0-127.16.19.135"}, // 209 whole blocks fit
	} {
		if got := coldRange(c.network, c.k, c.n); got != c.want {
			t.Errorf("coldRange(%s, %d, %d) = %s, want %s", c.network, c.k, c.n, got, c.want)
		}
	}
}

func TestSpread(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want string
	}{
		{nil, ""},
		{[]float64{0.5}, ""},
		{[]float64{0.58, 0.46, 0.64}, " (0.46–0.64)"},
	} {
		if got := spread(c.xs); got != c.want {
			t.Errorf("spread(%v) = %q, want %q", c.xs, got, c.want)
		}
	}
}
