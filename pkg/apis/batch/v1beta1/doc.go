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

// Package v1beta1 holds the batch.tensorstack.dev/v1beta1 API: the eight T9k job kinds (GenericJob,
// PyTorchTrainingJob, TensorFlowTrainingJob, XGBoostTrainingJob, MPIJob, ColossalAIJob, DeepSpeedJob,
// BeamJob). Field names follow the public TensorStack manuals and manifests so that existing user
// YAML applies unchanged; where manuals and manifests disagree, the manifests won.
// +kubebuilder:object:generate=true
// +groupName=batch.tensorstack.dev
package v1beta1
