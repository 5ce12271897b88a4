package topology

import (
	"context"
	"fmt"
	"sort"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
	"github.com/tensorstack/t9k/pkg/plugins/placement"
	"github.com/tensorstack/t9k/pkg/topology"
)

// planChecked plans the gang and has the placement engine check the plan with the profile's own
// filters, planning again around the nodes they refuse until a plan passes. The returned plan
// holds its GPUs, as planGang's does; a failed attempt holds nothing.
func (p *Topology) planChecked(ctx context.Context, key string, members []groupstate.Member, reqs []memberReq,
	policy topology.Policy, exclude func(string) bool, near []string) (*gangPlan, error) {
	pods := make(map[types.UID]*v1.Pod, len(members))
	for _, m := range members {
		pods[m.Pod.UID] = m.Pod
	}
	var plan *gangPlan
	_, err := p.place.Place(ctx, key, func(caps map[string]int) (*placement.Proposal, error) {
		var err error
		if plan, err = p.cache.planGang(key, reqs, policy, exclude, caps, near); err != nil {
			return nil, err
		}
		prop := &placement.Proposal{}
		for _, r := range reqs {
			if pl, ok := plan.byPod[r.uid]; ok && pods[r.uid] != nil {
				prop.Members = append(prop.Members, pods[r.uid])
				prop.Nodes = append(prop.Nodes, pl.Node)
			}
		}
		return prop, nil
	}, placement.Options{
		Drop: func() { p.cache.dropPlan(key) },
		Sweepable: func(pod *v1.Pod, node string) bool {
			free, ok := p.cache.freeOn(node)
			return ok && free >= podGPUs(pod, p.resource)
		},
	})
	if err != nil {
		return nil, err
	}
	return plan, nil
}

// learn tells the engine that a planned member failed the profile's filters on its planned node
// in its own cycle: the node is capped at the gang's members already placed there.
func (p *Topology) learn(pod *v1.Pod, key, node string, st *fwk.Status) {
	gang, ok := p.groups.Gang(pod)
	if !ok {
		return
	}
	keep := 0
	for _, m := range gang.Members {
		if m.Node == node && m.Pod.UID != pod.UID {
			keep++
		}
	}
	p.place.Learn(key, pod.Name, node, keep, st, sets.New(Name))
}

// memberReq is one gang member to place: its pod and what it asks of a node.
type memberReq struct {
	uid  types.UID
	gpus int
	nics int
}

// planGang places the members as a whole (pkg/topology's planner: smallest domain that fits, best
// fit, best-connected GPUs) and holds their GPUs under placeholders until each member's Reserve.
// An existing plan of the gang is dropped first. Members with identical requests form one planner
// group; placements are handed out in member order.
// caps limits how many members a node may take (see topology.Gang.MaxMembers).
// near are the nodes the gang's members already hold (see topology.Gang.Near).
func (c *gpuCache) planGang(key string, members []memberReq, policy topology.Policy, exclude func(string) bool, caps map[string]int, near []string) (*gangPlan, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropPlanLocked(key)

	type shape struct{ gpus, nics int }
	groupOf := map[shape]int{}
	var g topology.Gang
	g.Policy, g.Exclude, g.MaxMembers, g.Near = policy, exclude, caps, near
	byGroup := map[int][]types.UID{}
	for _, m := range members {
		s := shape{m.gpus, m.nics}
		i, ok := groupOf[s]
		if !ok {
			i = len(g.Groups)
			groupOf[s] = i
			g.Groups = append(g.Groups, topology.MemberGroup{Name: fmt.Sprintf("%dgpu", m.gpus), GPUs: m.gpus, NICs: m.nics})
		}
		g.Groups[i].Count++
		byGroup[i] = append(byGroup[i], m.uid)
	}
	plan, err := c.cluster.Plan(g)
	if err != nil {
		return nil, err
	}
	gp := &gangPlan{byPod: map[types.UID]topology.Placement{}, created: time.Now(), domain: plan.Domain}
	for _, p := range plan.Placements {
		uid := byGroup[p.Group][p.Ordinal]
		if err := c.cluster.Allocate(p.Node, p.GPUs, nil); err != nil {
			// The planner worked on this very state, so this is a bug; undo and report it.
			c.plans[key] = gp
			c.dropPlanLocked(key)
			return nil, fmt.Errorf("holding planned GPUs on %s: %w", p.Node, err)
		}
		c.owners[placeholderUID(uid)] = allocation{node: p.Node, gpus: p.GPUs, nics: p.NICs}
		gp.byPod[uid] = p
	}
	if len(c.plans) == 0 {
		c.oldestPlan = gp.created // otherwise an existing plan is older
	}
	c.plans[key] = gp
	return gp, nil
}

// placement returns the planned node of a member, if its gang has a live plan that still holds
// its GPUs (or it already reserved them).
func (c *gpuCache) placement(key string, uid types.UID) (string, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	gp := c.plans[key]
	if gp == nil {
		return "", false
	}
	p, ok := gp.byPod[uid]
	if !ok {
		return "", false
	}
	_, held := c.owners[placeholderUID(uid)]
	_, own := c.owners[uid]
	return p.Node, held || own
}

// dropPlan releases whatever a gang's plan still holds for members that have not reserved.
func (c *gpuCache) dropPlan(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropPlanLocked(key)
}

func (c *gpuCache) dropPlanLocked(key string) {
	gp := c.plans[key]
	if gp == nil {
		return
	}
	for uid := range gp.byPod {
		c.releaseLocked(placeholderUID(uid))
	}
	delete(c.plans, key)
}

// dropPlansOf drops the plan, if any, that holds a place for the pod (a pending member deleted).
func (c *gpuCache) dropPlansOf(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, gp := range c.plans {
		if _, ok := gp.byPod[uid]; ok {
			c.dropPlanLocked(key)
		}
	}
}

// expirePlans drops plans older than maxAge: a gang whose members never came to claim their
// places (rejected, deleted) must not hold GPUs for ever.
func (c *gpuCache) expirePlans(maxAge time.Duration) []string {
	// Called in every GPU pod's PreFilter: the common case (nothing can have expired) is one
	// comparison under the read lock, not serialised with the binding cycles' readers.
	c.mu.RLock()
	due := len(c.plans) > 0 && time.Since(c.oldestPlan) > maxAge
	c.mu.RUnlock()
	if !due {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var dropped []string
	oldest := time.Time{}
	for key, gp := range c.plans {
		if time.Since(gp.created) > maxAge {
			c.dropPlanLocked(key)
			dropped = append(dropped, key)
		} else if oldest.IsZero() || gp.created.Before(oldest) {
			oldest = gp.created
		}
	}
	c.oldestPlan = oldest
	sort.Strings(dropped)
	return dropped
}
