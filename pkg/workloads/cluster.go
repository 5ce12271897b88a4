package workloads

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Cluster is the shape of one job's pods: names, DNS names and ranks, derived only from the job's
// spec so that every reconcile (and every controller process) computes the same names.
type Cluster struct {
	Kind      string
	Name      string
	Namespace string
	// Service is the headless Service whose subdomain every pod joins.
	Service  string
	Replicas []Replicas
}

// NewCluster describes a job's pods; replicas carries the effective counts (elastic applied).
func NewCluster(kind, name, namespace string, replicas []Replicas) *Cluster {
	return &Cluster{Kind: kind, Name: name, Namespace: namespace, Service: dnsLabel(name), Replicas: replicas}
}

// Group returns the replica group of a type, or nil.
func (c *Cluster) Group(replicaType string) *Replicas {
	for i := range c.Replicas {
		if c.Replicas[i].Type == replicaType {
			return &c.Replicas[i]
		}
	}
	return nil
}

// Count is the number of replicas of a type (0 when absent).
func (c *Cluster) Count(replicaType string) int {
	if g := c.Group(replicaType); g != nil {
		return int(g.Count)
	}
	return 0
}

// PodName is the pod of one replica: <job>-<type>-<index>, or <job>-<type> for singletons.
func (c *Cluster) PodName(replicaType string, index int) string {
	if g := c.Group(replicaType); g != nil && g.Singleton {
		return c.Name + "-" + replicaType
	}
	return c.Name + "-" + replicaType + "-" + strconv.Itoa(index)
}

// Hostname is a pod's hostname: its name, shortened when longer than a DNS label allows.
func (c *Cluster) Hostname(replicaType string, index int) string {
	return dnsLabel(c.PodName(replicaType, index))
}

// Host is the DNS name other pods of the job reach a replica at (through the headless Service).
func (c *Cluster) Host(replicaType string, index int) string {
	return c.Hostname(replicaType, index) + "." + c.Service
}

// WorldSize is the number of replicas of all types.
func (c *Cluster) WorldSize() int {
	n := 0
	for _, g := range c.Replicas {
		n += int(g.Count)
	}
	return n
}

// Rank numbers replicas across types in the order they are listed.
func (c *Cluster) Rank(replicaType string, index int) int {
	r := 0
	for _, g := range c.Replicas {
		if g.Type == replicaType {
			return r + index
		}
		r += int(g.Count)
	}
	return r + index
}

// RankFrom numbers replicas with type first's first (the master: rank 0), then the others in the
// order they are listed.
func (c *Cluster) RankFrom(first, replicaType string, index int) int {
	if replicaType == first {
		return index
	}
	r := c.Count(first)
	for _, g := range c.Replicas {
		if g.Type == first {
			continue
		}
		if g.Type == replicaType {
			return r + index
		}
		r += int(g.Count)
	}
	return r + index
}

// dnsLabel returns s when it is a valid DNS-1035 label, else a shortened, hashed form of it, so
// that long job names still give valid Service names and hostnames.
func dnsLabel(s string) string {
	if len(validation.IsDNS1035Label(s)) == 0 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	h := hex.EncodeToString(sum[:])[:8]
	prefix := strings.ReplaceAll(s, ".", "-")
	if len(prefix) > 50 {
		prefix = prefix[:50]
	}
	// A DNS-1035 label starts with a letter and ends alphanumeric.
	for len(prefix) > 0 && !isAlnum(prefix[len(prefix)-1]) {
		prefix = prefix[:len(prefix)-1]
	}
	if prefix == "" || prefix[0] < 'a' || prefix[0] > 'z' {
		prefix = "j" + prefix
	}
	return fmt.Sprintf("%s-%s", prefix, h)
}

func isAlnum(b byte) bool { return (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') }
