package admission

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Keys of the certificate Secret.
const (
	KeyCACert   = "ca.crt"        // the CA that signs the serving certificate now
	KeyCAKey    = "ca.key"        // its key
	KeyCABundle = "ca-bundle.crt" // the CAs the apiserver must trust: current and, after a CA rotation, the previous one until it expires
	KeyTLSCert  = corev1.TLSCertKey
	KeyTLSKey   = corev1.TLSPrivateKeyKey
)

// CertPolicy says what certificates to make and when to renew them. Renewal happens once less than
// a fifth of a CA's or a quarter of a serving certificate's life is left, so that every replica
// and the apiserver have long picked up the successor before the old one expires.
type CertPolicy struct {
	DNSNames     []string
	IPs          []net.IP
	CAValidity   time.Duration
	CertValidity time.Duration
}

// DefaultCertPolicy: a 5-year CA and 1-year serving certificates.
func DefaultCertPolicy(dns []string, ips []net.IP) CertPolicy {
	return CertPolicy{DNSNames: dns, IPs: ips, CAValidity: 5 * 365 * 24 * time.Hour, CertValidity: 365 * 24 * time.Hour}
}

// Rotate returns the Secret data the webhook should use at now: data itself when still good
// (changed false), else renewed pieces. It is a pure function of its inputs but for randomness.
func Rotate(data map[string][]byte, p CertPolicy, now time.Time) (out map[string][]byte, changed bool, err error) {
	out = map[string][]byte{}
	for k, v := range data {
		out[k] = v
	}
	ca, caErr := parseCert(out[KeyCACert])
	_, caKeyErr := parseKey(out[KeyCAKey])
	if caErr != nil || caKeyErr != nil || renewDue(ca, p.CAValidity/5, now) {
		certPEM, keyPEM, err := newCA(now, p.CAValidity)
		if err != nil {
			return nil, false, err
		}
		out[KeyCACert], out[KeyCAKey] = certPEM, keyPEM
		delete(out, KeyTLSCert) // signed by the old CA: reissue
		changed = true
	}
	// The bundle: the current CA first, then older ones still valid (the apiserver may still be
	// calling a replica that serves a certificate of the previous CA).
	bundle := append([]byte(nil), out[KeyCACert]...)
	for _, c := range splitPEM(data[KeyCABundle]) {
		if old, err := parseCert(c); err == nil && now.Before(old.NotAfter) && !bytes.Contains(bundle, c) {
			bundle = append(bundle, c...)
		}
	}
	if !bytes.Equal(bundle, data[KeyCABundle]) {
		out[KeyCABundle] = bundle
		changed = true
	}
	ca, _ = parseCert(out[KeyCACert])
	caKey, _ := parseKey(out[KeyCAKey])
	cert, certErr := parseCert(out[KeyTLSCert])
	_, keyErr := parseKey(out[KeyTLSKey])
	if certErr != nil || keyErr != nil || renewDue(cert, p.CertValidity/4, now) ||
		cert.CheckSignatureFrom(ca) != nil || !covers(cert, p) {
		certPEM, keyPEM, err := newServingCert(ca, caKey, p, now)
		if err != nil {
			return nil, false, err
		}
		out[KeyTLSCert], out[KeyTLSKey] = certPEM, keyPEM
		changed = true
	}
	return out, changed, nil
}

func renewDue(c *x509.Certificate, margin time.Duration, now time.Time) bool {
	return c == nil || now.Add(margin).After(c.NotAfter) || now.Before(c.NotBefore)
}

func covers(c *x509.Certificate, p CertPolicy) bool {
	for _, d := range p.DNSNames {
		if !slices.Contains(c.DNSNames, d) {
			return false
		}
	}
	for _, ip := range p.IPs {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}

func newCA(now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("t9k-controllers-webhook-ca@%d", now.Unix())},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew with the apiserver
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	return encode(der, key)
}

func newServingCert(ca *x509.Certificate, caKey any, p CertPolicy, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	cn := "t9k-controllers-webhook"
	if len(p.DNSNames) > 0 {
		cn = p.DNSNames[0]
	}
	notAfter := now.Add(p.CertValidity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     p.DNSNames,
		IPAddresses:  p.IPs,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	return encode(der, key)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

func encode(der []byte, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func parseKey(b []byte) (any, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no key")
	}
	return x509.ParseECPrivateKey(blk.Bytes)
}

func splitPEM(b []byte) [][]byte {
	var out [][]byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out
		}
		out = append(out, pem.EncodeToMemory(blk))
	}
}

// Certs keeps the webhook's certificate in a Secret shared by all replicas and serves it. Every
// replica runs it (not only the leader): all of them serve the webhook.
type Certs struct {
	Reader   client.Reader // uncached: secrets are not worth a cluster-wide informer
	Writer   client.Client
	Secret   types.NamespacedName
	Policy   CertPolicy
	Now      func() time.Time
	current  atomic.Pointer[tls.Certificate]
	caBundle atomic.Pointer[[]byte]
}

// Ensure reads the Secret, renews what is due (creating the Secret if needed; a conflict with
// another replica is resolved by taking the winner's) and loads the serving certificate.
func (c *Certs) Ensure(ctx context.Context) error {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	var data map[string][]byte
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var s corev1.Secret
		err := c.Reader.Get(ctx, c.Secret, &s)
		create := apierrors.IsNotFound(err)
		if err != nil && !create {
			return err
		}
		out, changed, err := Rotate(s.Data, c.Policy, now())
		if err != nil {
			return err
		}
		data = out
		if !changed {
			return nil
		}
		s.Data = out
		if create {
			s.ObjectMeta = metav1.ObjectMeta{Namespace: c.Secret.Namespace, Name: c.Secret.Name,
				Labels: map[string]string{"app.kubernetes.io/name": "t9k-controllers"}}
			s.Type = corev1.SecretTypeTLS
			err = c.Writer.Create(ctx, &s)
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("secrets"), s.Name, err)
			}
			return err
		}
		return c.Writer.Update(ctx, &s)
	})
	if err != nil {
		return fmt.Errorf("webhook certificate in Secret %s: %w", c.Secret, err)
	}
	pair, err := tls.X509KeyPair(data[KeyTLSCert], data[KeyTLSKey])
	if err != nil {
		return fmt.Errorf("webhook certificate in Secret %s: %w", c.Secret, err)
	}
	c.current.Store(&pair)
	bundle := data[KeyCABundle]
	c.caBundle.Store(&bundle)
	return nil
}

// GetCertificate serves the current certificate (tls.Config.GetCertificate).
func (c *Certs) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if p := c.current.Load(); p != nil {
		return p, nil
	}
	return nil, errors.New("webhook certificate not loaded yet")
}

// CABundle is the PEM bundle the apiserver must trust.
func (c *Certs) CABundle() []byte {
	if p := c.caBundle.Load(); p != nil {
		return *p
	}
	return nil
}
