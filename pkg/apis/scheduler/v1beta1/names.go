/*
Copyright 2026 The t9k Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1beta1

// Names shared by the scheduler, the job controllers and users' manifests.
const (
	// SchedulerName is the schedulerName of pods the t9k scheduler places.
	SchedulerName = "t9k-scheduler"
	// DefaultQueue is the queue of a PodGroup that names none.
	DefaultQueue = "default"

	// LabelGroupName on a pod makes it a member of the PodGroup of that name in its namespace.
	// Immutable: a pod changes group only by being recreated.
	LabelGroupName = "scheduler.tensorstack.dev/group-name"
	// LabelQueue on a pod puts it (and, without a PodGroup, a virtual group of one) in that Queue.
	// Immutable, and only honoured with schedulerName t9k-scheduler.
	LabelQueue = "scheduler.tensorstack.dev/queue"
	// LabelRole on a pod names its role in the group (job controllers use the replica type);
	// PodGroup.spec.roles counts members per role.
	LabelRole = "scheduler.tensorstack.dev/role"

	// AnnotationTopologyPolicy on a T9k job (whose API has no such field) sets the topologyPolicy
	// of the PodGroup the controller creates for it. Value: "None", "Preferred", or
	// "Required:<level>"; see ParseTopologyPolicy.
	AnnotationTopologyPolicy = "scheduler.tensorstack.dev/topology-policy"
)
