package groupstate

import (
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
)

// roleNeeds returns, per role with a minimum, how many more members of it are needed beyond
// those counted by in.
func (g *Gang) roleNeeds(in func(*Member) bool) map[string]int {
	if len(g.Roles) == 0 {
		return nil
	}
	have := map[string]int{}
	for i := range g.Members {
		if in(&g.Members[i]) {
			have[g.Members[i].Role()]++
		}
	}
	need := map[string]int{}
	for _, r := range g.Roles {
		if n := int(r.MinMember) - have[r.Name]; n > 0 {
			need[r.Name] = n
		}
	}
	return need
}

func (g *Gang) count(in func(*Member) bool) int {
	n := 0
	for i := range g.Members {
		if in(&g.Members[i]) {
			n++
		}
	}
	return n
}

func describeShortfall(what string, have, min int, roleNeed map[string]int, roles func(string) int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of minMember %d member pods %s", have, min, what)
	for _, name := range sortedKeys(roleNeed) {
		fmt.Fprintf(&b, "; role %s: %d of %d", name, roles(name)-roleNeed[name], roles(name))
	}
	return b.String()
}

func (g *Gang) roleMin(name string) int {
	for _, r := range g.Roles {
		if r.Name == name {
			return int(r.MinMember)
		}
	}
	return 0
}

// ShortOfMembers says why the gang cannot start yet because too few member pods exist (the
// PreEnqueue rule), or "" when minMember pods and every role's minimum exist.
func (g *Gang) ShortOfMembers() string {
	all := func(*Member) bool { return true }
	have, need := g.count(all), g.roleNeeds(all)
	if have >= int(g.MinMember) && len(need) == 0 {
		return ""
	}
	return describeShortfall("exist", have, int(g.MinMember), need, g.roleMin)
}

// ShortOfQuorum says what the gang lacks for its quorum counting only assigned members (bound or
// reserved), or "" when they are enough to let the gang run.
func (g *Gang) ShortOfQuorum() string {
	in := (*Member).Assigned
	have, need := g.count(in), g.roleNeeds(in)
	if have >= int(g.MinMember) && len(need) == 0 {
		return ""
	}
	return describeShortfall("placed", have, int(g.MinMember), need, g.roleMin)
}

// Waiting reports whether some member is reserved and not yet bound (an attempt is under way).
func (g *Gang) Waiting() bool {
	for i := range g.Members {
		if g.Members[i].Reserved {
			return true
		}
	}
	return false
}

// ToPlace picks the unassigned members that must be placed together for the gang to reach its
// quorum: first (if given and unassigned), then enough of each short role, then any others up to
// minMember. Already assigned members count towards the quorum and are not returned.
func (g *Gang) ToPlace(first *v1.Pod) []Member {
	need := int(g.MinMember) - g.count((*Member).Assigned)
	roleNeed := g.roleNeeds((*Member).Assigned)
	var out []Member
	taken := make([]bool, len(g.Members))
	take := func(i int) {
		taken[i] = true
		out = append(out, g.Members[i])
		need--
		if n, ok := roleNeed[g.Members[i].Role()]; ok {
			roleNeed[g.Members[i].Role()] = n - 1
		}
	}
	if first != nil {
		for i := range g.Members {
			if g.Members[i].Pod.UID == first.UID && !g.Members[i].Assigned() {
				take(i)
			}
		}
	}
	for _, role := range sortedKeys(roleNeed) {
		for i := range g.Members {
			if roleNeed[role] <= 0 {
				break
			}
			if !taken[i] && !g.Members[i].Assigned() && g.Members[i].Role() == role {
				take(i)
			}
		}
	}
	for i := range g.Members {
		if need <= 0 {
			break
		}
		if !taken[i] && !g.Members[i].Assigned() {
			take(i)
		}
	}
	return out
}

// Requests sums the members' requests.
func Requests(ms []Member) Res {
	r := Res{}
	for i := range ms {
		r.Add(ms[i].Requests)
	}
	return r
}
