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

// Package v1beta1 holds the scheduler.tensorstack.dev/v1beta1 API of the t9k scheduler: Queue (a
// quota and priority class for workloads, kept in the scheduler's namespace) and PodGroup (a gang of
// pods that is scheduled all together or not at all).
// +kubebuilder:object:generate=true
// +groupName=scheduler.tensorstack.dev
package v1beta1
