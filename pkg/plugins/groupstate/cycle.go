package groupstate

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

const pendingKey fwk.StateKey = "scheduler.tensorstack.dev/pending-recorded"

type flag struct{}

func (flag) Clone() fwk.StateData { return flag{} }

// RecordPending sets the gang's GroupScheduled=False reason and marks the scheduling cycle, so that
// a later plugin (PostFilter) does not replace this precise reason with a generic one.
func (s *State) RecordPending(cs fwk.CycleState, key GroupKey, reason, msg string) {
	s.SetCondition(key, v1beta1.PodGroupConditionScheduled, metav1.ConditionFalse, reason, msg)
	s.MarkFailed(key)
	if cs != nil {
		cs.Write(pendingKey, flag{})
	}
}

// PendingRecorded says whether a plugin recorded the gang's reason in this cycle.
func PendingRecorded(cs fwk.CycleState) bool {
	if cs == nil {
		return false
	}
	_, err := cs.Read(pendingKey)
	return err == nil
}

const checkKey fwk.StateKey = "scheduler.tensorstack.dev/plan-check"

// MarkPlanCheck marks a cycle state as a plan check's: the profile's plugins run on a gang member
// that is not the pod being scheduled, on a node its gang's plan proposes. Our own plugins' rules
// are whole-gang rules, already applied to the plan as a whole: their PreFilter skips such a
// cycle (and with it their Filter), and records nothing.
func MarkPlanCheck(cs fwk.CycleState) { cs.Write(checkKey, flag{}) }

// PlanCheck says whether the cycle state is a plan check's (see MarkPlanCheck).
func PlanCheck(cs fwk.CycleState) bool {
	if cs == nil {
		return false
	}
	_, err := cs.Read(checkKey)
	return err == nil
}
