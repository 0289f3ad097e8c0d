// Package k8s checks deploy/k8s/raftq.yaml: every object decodes strictly
// into its Kubernetes API type (an unknown or misspelt field fails), the
// objects fit together (selectors, ports, probes, the peer list), and each
// daemon accepts its arguments (its own `config` command, built from this
// checkout). It is a module of its own so the k8s.io modules stay out of
// raftq's go.mod.
package k8s

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

type objects struct {
	services     map[string]*corev1.Service
	statefulSets map[string]*appsv1.StatefulSet
	deployments  map[string]*appsv1.Deployment
	pdbs         map[string]*policyv1.PodDisruptionBudget
	pvcs         map[string]*corev1.PersistentVolumeClaim
}

// load decodes every document of raftq.yaml strictly into its type.
func load(t *testing.T) objects {
	t.Helper()
	b, err := os.ReadFile("raftq.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o := objects{map[string]*corev1.Service{}, map[string]*appsv1.StatefulSet{}, map[string]*appsv1.Deployment{},
		map[string]*policyv1.PodDisruptionBudget{}, map[string]*corev1.PersistentVolumeClaim{}}
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if head.Kind == "" {
			continue // the leading comment
		}
		var obj any
		var name *string
		switch head.APIVersion + "/" + head.Kind {
		case "v1/Service":
			s := &corev1.Service{}
			obj, name = s, &s.Name
			defer func() { o.services[s.Name] = s }()
		case "apps/v1/StatefulSet":
			s := &appsv1.StatefulSet{}
			obj, name = s, &s.Name
			defer func() { o.statefulSets[s.Name] = s }()
		case "apps/v1/Deployment":
			d := &appsv1.Deployment{}
			obj, name = d, &d.Name
			defer func() { o.deployments[d.Name] = d }()
		case "policy/v1/PodDisruptionBudget":
			p := &policyv1.PodDisruptionBudget{}
			obj, name = p, &p.Name
			defer func() { o.pdbs[p.Name] = p }()
		case "v1/PersistentVolumeClaim":
			p := &corev1.PersistentVolumeClaim{}
			obj, name = p, &p.Name
			defer func() { o.pvcs[p.Name] = p }()
		default:
			t.Fatalf("document %d: unexpected %s %s", i, head.APIVersion, head.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("document %d (%s): %v", i, head.Kind, err)
		}
		if *name == "" {
			t.Fatalf("document %d (%s) has no name", i, head.Kind)
		}
	}
	return o
}

// A misspelt field is what strict decoding is for: make sure it catches one.
func TestStrictDecodingCatchesTypos(t *testing.T) {
	bad := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n"
	if err := yaml.UnmarshalStrict([]byte(bad), &appsv1.Deployment{}); err == nil {
		t.Fatal("a misspelt field decoded")
	}
}

func TestManifestsFitTogether(t *testing.T) {
	o := load(t)
	sts := o.statefulSets["brokerd"]
	if sts == nil {
		t.Fatal("no brokerd StatefulSet")
	}
	peers := o.services[sts.Spec.ServiceName]
	if peers == nil || peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses {
		t.Fatalf("StatefulSet's service %q must be headless and publish not-ready pods (bootstrap needs the peers' names before any is ready)", sts.Spec.ServiceName)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Fatal("brokerd pods must start in parallel: the first cannot become ready without a quorum")
	}

	// Every Service selects pods of some workload and targets their ports.
	pods := map[string]corev1.PodTemplateSpec{"StatefulSet/brokerd": sts.Spec.Template}
	for n, d := range o.deployments {
		pods["Deployment/"+n] = d.Spec.Template
	}
	for n, s := range o.services {
		matched := false
		for _, p := range pods {
			if !selects(s.Spec.Selector, p.Labels) {
				continue
			}
			matched = true
			for _, sp := range s.Spec.Ports {
				if !hasPort(p.Spec.Containers, sp.TargetPort) {
					t.Errorf("service %s port %s targets %s, which its pods do not expose", n, sp.Name, sp.TargetPort.String())
				}
			}
		}
		if !matched {
			t.Errorf("service %s selects no pods", n)
		}
	}
	for n, p := range o.pdbs {
		if !selects(p.Spec.Selector.MatchLabels, sts.Spec.Template.Labels) || p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() != 1 {
			t.Errorf("PDB %s must let one broker go at a time (3 voters keep a quorum of 2)", n)
		}
	}
	for n, d := range o.deployments {
		if !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			t.Errorf("deployment %s does not select its own pods", n)
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && o.pvcs[v.PersistentVolumeClaim.ClaimName] == nil {
				t.Errorf("deployment %s mounts missing claim %s", n, v.PersistentVolumeClaim.ClaimName)
			}
		}
	}
	if d := o.deployments["svcd"]; d == nil || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || *d.Spec.Replicas != 1 {
		t.Error("svcd on SQLite must be one replica, replaced with Recreate (never two writers on its file)")
	}

	// Readiness comes from brokerd's health service, on the gRPC port.
	c := sts.Spec.Template.Spec.Containers[0]
	if rp := c.ReadinessProbe; rp == nil || rp.GRPC == nil || rp.GRPC.Service == nil || *rp.GRPC.Service != "raftq.v1.Broker" || !hasPort([]corev1.Container{c}, intstr.FromInt32(rp.GRPC.Port)) {
		t.Error("brokerd readiness must be the raftq.v1.Broker health service on its gRPC port")
	}
	// The peer list names every replica at its stable DNS name, on the
	// Raft port, and bootstrap-expect is the replica count.
	args := argMap(c.Args)
	n := int(*sts.Spec.Replicas)
	if args["bootstrap-expect"] != fmt.Sprint(n) {
		t.Errorf("bootstrap-expect %q, want the %d replicas", args["bootstrap-expect"], n)
	}
	var want []string
	for i := 0; i < n; i++ {
		want = append(want, fmt.Sprintf("%s-%d=%s-%d.%s.$(POD_NAMESPACE).svc.cluster.local:7201", sts.Name, i, sts.Name, i, peers.Name))
	}
	if args["peers"] != strings.Join(want, ",") {
		t.Errorf("peers %q, want %q", args["peers"], strings.Join(want, ","))
	}
	if args["raft-advertise"] != "$(POD_NAME)."+peers.Name+".$(POD_NAMESPACE).svc.cluster.local:7201" {
		t.Errorf("raft-advertise %q does not match the peer list's names", args["raft-advertise"])
	}
}

// Each daemon's `config` command accepts the manifest's arguments (with
// the pod's variables filled in) and reads the values meant.
func TestDaemonsAcceptTheirArguments(t *testing.T) {
	o := load(t)
	bin := t.TempDir()
	root, _ := filepath.Abs("../..")
	build := exec.Command("go", "build", "-o", bin, "./cmd/brokerd", "./cmd/svcd", "./cmd/workerd")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	env := map[string]string{"POD_NAME": "brokerd-1", "POD_NAMESPACE": "raftq"}
	check := func(daemon string, c corev1.Container, want ...string) {
		t.Helper()
		var args []string
		for _, a := range c.Args {
			args = append(args, regexp.MustCompile(`\$\((\w+)\)`).ReplaceAllStringFunc(a, func(m string) string {
				v, ok := env[m[2:len(m)-1]]
				if !ok {
					t.Errorf("%s: %s uses $(%s), which no test value stands for", daemon, a, m[2:len(m)-1])
				}
				return v
			}))
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil {
				t.Errorf("%s: env %s is not from the pod's fields", daemon, e.Name)
			}
		}
		cmd := exec.Command(filepath.Join(bin, daemon), append([]string{"config"}, args...)...)
		cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s config %v: %v\n%s%s", daemon, args, err, out.String(), errb.String())
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s config lacks %q:\n%s", daemon, w, out.String())
			}
		}
	}
	check("brokerd", o.statefulSets["brokerd"].Spec.Template.Spec.Containers[0],
		"brokerd-1", "brokerd-1.brokerd-peers.raftq.svc.cluster.local:7201", "/data")
	check("svcd", o.deployments["svcd"].Spec.Template.Spec.Containers[0], "sqlite", "brokerd-0.brokerd-peers:7101")
	env["POD_NAME"] = "workerd-7d9f-abcde"
	check("workerd", o.deployments["workerd"].Spec.Template.Spec.Containers[0], "workerd-7d9f-abcde", "svcd:7400")
}

func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func hasPort(cs []corev1.Container, p intstr.IntOrString) bool {
	for _, c := range cs {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return true
			}
		}
	}
	return false
}

// argMap maps --name=value arguments to name → value.
func argMap(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(strings.TrimPrefix(a, "--"), "="); ok {
			m[k] = v
		}
	}
	return m
}
