package workloads

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

func TestTensorBoardLogs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tb      batch.TensorBoardSpec
		dirs    []string
		claims  []string
		secrets []string
		err     string
	}{
		{name: "filesets", tb: batch.TensorBoardSpec{TrainingLogFilesets: []string{"t9k://pvc/tutorial/job/log", "t9k://minio/creds/bucket/runs"}},
			dirs: []string{"/t9k/logs/tutorial/job/log", "s3://bucket/runs"}, claims: []string{"tutorial"}, secrets: []string{"creds"}},
		{name: "logDir pvc with ./ paths, one volume", tb: batch.TensorBoardSpec{LogDir: &batch.TensorBoardLogDir{PVC: []batch.PVCPaths{{Name: "mnist", SubPath: []string{"./log", "eval/"}}}}},
			dirs: []string{"/t9k/logs/mnist/log", "/t9k/logs/mnist/eval"}, claims: []string{"mnist"}},
		{name: "whole pvc", tb: batch.TensorBoardSpec{LogDir: &batch.TensorBoardLogDir{PVC: []batch.PVCPaths{{Name: "mnist"}}}},
			dirs: []string{"/t9k/logs/mnist"}, claims: []string{"mnist"}},
		{name: "s3", tb: batch.TensorBoardSpec{LogDir: &batch.TensorBoardLogDir{S3: &batch.S3Paths{SecretRef: corev1.LocalObjectReference{Name: "s"}, URI: []string{"s3://b/x"}}}},
			dirs: []string{"s3://b/x"}, secrets: []string{"s"}},
		{name: "http refused", tb: batch.TensorBoardSpec{LogDir: &batch.TensorBoardLogDir{HTTP: &batch.HTTPPaths{URL: []string{"http://x"}}}}, err: "logDir.http"},
		{name: "bad fileset", tb: batch.TensorBoardSpec{TrainingLogFilesets: []string{"/data/log"}}, err: "trainingLogFilesets"},
		{name: "nothing", err: "no logs"},
	} {
		dirs, vols, mounts, envFrom, err := tensorboardLogs(&tc.tb)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one about %s", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var claims, secrets []string
		for _, v := range vols {
			claims = append(claims, v.PersistentVolumeClaim.ClaimName)
		}
		for _, e := range envFrom {
			secrets = append(secrets, e.SecretRef.Name)
		}
		if !reflect.DeepEqual(dirs, tc.dirs) || !reflect.DeepEqual(claims, tc.claims) || !reflect.DeepEqual(secrets, tc.secrets) || len(mounts) != len(vols) {
			t.Errorf("%s: dirs %v claims %v secrets %v mounts %v", tc.name, dirs, claims, secrets, mounts)
		}
	}
}
