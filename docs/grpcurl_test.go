// Package docs_test checks the runnable parts of docs/: the grpcurl
// recipes in operations.md are sent, as written, to a real cluster and svcd.
package docs_test

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health/grpc_health_v1" // registers the health messages the recipes name
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/raftq/raftq/internal/testcluster"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/svcd/svcdtest"
)

// recipe is one grpcurl call of the docs: the address, the full method
// (service/method) and the JSON request (-d).
type recipe struct {
	addr, method, body string
}

var (
	dataRe   = regexp.MustCompile(`-d '([^']*)'`)
	methodRe = regexp.MustCompile(`\s(\S+:\d+)\s+([a-z][\w.]*\.[A-Z]\w*/[A-Z]\w*)`)
)

// recipes reads the grpcurl commands that call a method from the
// markdown file (joining lines continued with a backslash).
func recipes(t *testing.T, file string) []recipe {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	var out []recipe
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "grpcurl ") {
			continue
		}
		m := methodRe.FindStringSubmatch(line)
		if m == nil {
			continue // list, describe
		}
		r := recipe{addr: m[1], method: m[2], body: "{}"}
		if d := dataRe.FindStringSubmatch(line); d != nil {
			r.body = d[1]
		}
		out = append(out, r)
	}
	return out
}

// message finds a registered message type by its full name.
func message(t *testing.T, name protoreflect.FullName) proto.Message {
	t.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return mt.New().Interface()
}

// TestGRPCurlRecipes sends every grpcurl recipe of operations.md, its JSON
// decoded the way grpcurl decodes it (protojson against the method's input
// type), to a real 3-node cluster (127.0.0.1:7101) and svcd
// (127.0.0.1:7400). JOB_ID and TOKEN are the job the Enqueue recipe made and
// the lease token the Fetch recipe got. Every call must succeed.
func TestGRPCurlRecipes(t *testing.T) {
	rs := recipes(t, "operations.md")
	if len(rs) < 8 {
		t.Fatalf("found %d grpcurl recipes in operations.md: the parser or the doc changed", len(rs))
	}
	c := testcluster.New(t, 3, nil)
	sv := svcdtest.Start(t, svcdtest.SQLite(t))
	addrs := map[string]string{"127.0.0.1:7101": c.Addrs()[1], "127.0.0.1:7400": sv.GRPCAddr()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var jobID, token string
	for _, r := range rs {
		target, ok := addrs[r.addr]
		if !ok {
			t.Fatalf("recipe %s dials %s: not a make run address", r.method, r.addr)
		}
		svc, meth, _ := strings.Cut(r.method, "/")
		sd, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
		if err != nil {
			t.Fatalf("recipe %s: %v", r.method, err)
		}
		md := sd.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(meth))
		if md == nil {
			t.Fatalf("recipe %s: no such method", r.method)
		}
		body := strings.NewReplacer("JOB_ID", jobID, "TOKEN", token).Replace(r.body)
		in, out := message(t, md.Input().FullName()), message(t, md.Output().FullName())
		if err := protojson.Unmarshal([]byte(body), in); err != nil {
			t.Fatalf("recipe %s: -d %s: %v", r.method, body, err)
		}
		if r.method == "raftq.v1.Results/GetResult" { // a result for the job to read
			rc, err := results.Dial(sv.GRPCAddr())
			if err != nil {
				t.Fatal(err)
			}
			tok, _ := strconv.ParseUint(token, 10, 64)
			if _, err := rc.StoreResult(ctx, results.Result{JobID: jobID, Queue: "default", Type: "echo", LeaseToken: tok, Status: results.StatusSucceeded, Output: []byte("hello")}); err != nil {
				t.Fatal(err)
			}
			rc.Close()
		}
		cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		err = cc.Invoke(ctx, "/"+r.method, in, out)
		cc.Close()
		if err != nil {
			t.Fatalf("recipe %s -d %s: %v", r.method, body, err)
		}
		switch o := out.(type) {
		case *raftqv1.EnqueueResponse:
			jobID = o.Results[0].JobId
		case *raftqv1.FetchResponse:
			if len(o.Jobs) != 1 || o.Jobs[0].Id != jobID {
				t.Fatalf("Fetch recipe got %v, want job %s", o.Jobs, jobID)
			}
			token = strconv.FormatUint(o.Jobs[0].LeaseToken, 10)
		case *raftqv1.GetJobResponse:
			if o.Job.State != raftqv1.JobState_JOB_STATE_SUCCEEDED {
				t.Fatalf("after the Ack recipe the job is %v", o.Job.State)
			}
		}
	}
}
