package admission

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"
)

func TestRotate(t *testing.T) {
	p := CertPolicy{DNSNames: []string{"svc.ns.svc"}, IPs: []net.IP{net.ParseIP("127.0.0.1")},
		CAValidity: 100 * time.Hour, CertValidity: 40 * time.Hour}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	first, changed, err := Rotate(nil, p, t0)
	if err != nil || !changed {
		t.Fatalf("first Rotate: changed=%v err=%v", changed, err)
	}
	verify := func(data map[string][]byte, at time.Time) {
		t.Helper()
		pair, err := tls.X509KeyPair(data[KeyTLSCert], data[KeyTLSKey])
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(data[KeyCABundle])
		for _, host := range []string{"svc.ns.svc", "127.0.0.1"} {
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: host, CurrentTime: at}); err != nil {
				t.Errorf("%s at %s: %v", host, at, err)
			}
		}
	}
	verify(first, t0)

	for _, tc := range []struct {
		name       string
		at         time.Time
		policy     CertPolicy
		wantChange bool
		newCA      bool
	}{
		{name: "fresh: nothing to do", at: t0.Add(time.Hour), policy: p},
		{name: "serving cert in its last quarter", at: t0.Add(31 * time.Hour), policy: p, wantChange: true},
		{name: "new host", at: t0.Add(time.Hour), policy: CertPolicy{DNSNames: []string{"other"}, CAValidity: p.CAValidity, CertValidity: p.CertValidity}, wantChange: true},
		{name: "CA in its last fifth", at: t0.Add(81 * time.Hour), policy: p, wantChange: true, newCA: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, changed, err := Rotate(first, tc.policy, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tc.wantChange {
				t.Fatalf("changed = %v, want %v", changed, tc.wantChange)
			}
			if gotNewCA := !bytes.Equal(out[KeyCACert], first[KeyCACert]); gotNewCA != tc.newCA {
				t.Errorf("new CA = %v, want %v", gotNewCA, tc.newCA)
			}
			if tc.newCA && !bytes.Contains(out[KeyCABundle], first[KeyCACert]) {
				t.Error("the bundle dropped the previous CA while it is still valid")
			}
			if tc.policy.IPs != nil {
				verify(out, tc.at)
			}
		})
	}
	// Garbage is replaced, not trusted.
	out, changed, err := Rotate(map[string][]byte{KeyCACert: []byte("x"), KeyTLSCert: []byte("y")}, p, t0)
	if err != nil || !changed {
		t.Fatalf("Rotate(garbage): changed=%v err=%v", changed, err)
	}
	verify(out, t0)
}
