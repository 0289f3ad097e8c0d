package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/svcd/server"
	"github.com/raftq/raftq/svcd/store"
	"github.com/raftq/raftq/svcd/svcdtest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func configFor(b svcdtest.Backend) server.Config {
	return server.Config{
		ListenGRPC:    "127.0.0.1:0",
		ListenHTTP:    "127.0.0.1:0",
		DB:            b.Driver,
		DSN:           b.DSN,
		DataDir:       b.DataDir,
		ReadyInterval: 50 * time.Millisecond,
		// These tests are of svcd alone; brokercheck has its own.
		Brokers: server.BrokerCheck{Disabled: true},
	}
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(16<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func assertRows(t *testing.T, s *server.Server, results, attempts int64) {
	t.Helper()
	st, err := s.Store().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Results != results || st.Attempts != attempts {
		t.Fatalf("rows: %d results, %d attempts; want %d and %d", st.Results, st.Attempts, results, attempts)
	}
}

func goodPB() *raftqv1.StoreResultRequest {
	return &raftqv1.StoreResultRequest{
		JobId: "job-1", Queue: "q", Type: "t", LeaseToken: 7, WorkerId: "w", Attempt: 1,
		Status: raftqv1.ResultStatus_RESULT_STATUS_SUCCEEDED, Output: []byte("ok"),
		FinishedAt: timestamppb.Now(),
	}
}

// rawCodec sends bytes as they are: the way to put a malformed protobuf on
// the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.([]byte))}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}
func (rawCodec) Name() string { return "proto" }

// TestBadInputGRPC: every kind of bad write gets INVALID_ARGUMENT with a
// reason and the offending fields, and writes nothing.
func TestBadInputGRPC(t *testing.T) {
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		s := svcdtest.StartWith(t, configFor(b))
		conn := dial(t, s.GRPCAddr())
		cl := raftqv1.NewResultsClient(conn)
		ctx := context.Background()
		mod := func(f func(r *raftqv1.StoreResultRequest)) *raftqv1.StoreResultRequest {
			r := goodPB()
			f(r)
			return r
		}
		for _, tc := range []struct {
			name   string
			req    *raftqv1.StoreResultRequest
			reason raftqv1.ErrorDetail_Reason
			field  string
		}{
			{"missing job id", mod(func(r *raftqv1.StoreResultRequest) { r.JobId = "" }), raftqv1.ErrorDetail_INVALID_ARGUMENT, "job_id"},
			{"missing queue", mod(func(r *raftqv1.StoreResultRequest) { r.Queue = "" }), raftqv1.ErrorDetail_INVALID_ARGUMENT, "queue"},
			{"missing token", mod(func(r *raftqv1.StoreResultRequest) { r.LeaseToken = 0 }), raftqv1.ErrorDetail_INVALID_ARGUMENT, "lease_token"},
			{"token out of range", mod(func(r *raftqv1.StoreResultRequest) { r.LeaseToken = 1 << 63 }), raftqv1.ErrorDetail_INVALID_ARGUMENT, "lease_token"},
			{"missing status", mod(func(r *raftqv1.StoreResultRequest) { r.Status = 0 }), raftqv1.ErrorDetail_INVALID_ARGUMENT, "status"},
			{"unknown status", mod(func(r *raftqv1.StoreResultRequest) { r.Status = 42 }), raftqv1.ErrorDetail_INVALID_ARGUMENT, "status"},
			{"oversized output", mod(func(r *raftqv1.StoreResultRequest) { r.Output = make([]byte, 1<<20+1) }), raftqv1.ErrorDetail_TOO_LARGE, "output"},
			{"oversized job id", mod(func(r *raftqv1.StoreResultRequest) { r.JobId = strings.Repeat("x", 256) }), raftqv1.ErrorDetail_TOO_LARGE, "job_id"},
			{"NUL in error", mod(func(r *raftqv1.StoreResultRequest) { r.Error = "a\x00b" }), raftqv1.ErrorDetail_INVALID_ARGUMENT, "error"},
			{"started after finished", mod(func(r *raftqv1.StoreResultRequest) {
				r.StartedAt = timestamppb.New(r.FinishedAt.AsTime().Add(time.Second))
			}), raftqv1.ErrorDetail_INVALID_ARGUMENT, "started_at"},
			{"invalid timestamp", mod(func(r *raftqv1.StoreResultRequest) { r.FinishedAt = &timestamppb.Timestamp{Nanos: -5} }), raftqv1.ErrorDetail_INVALID_ARGUMENT, "finished_at"},
		} {
			_, err := cl.StoreResult(ctx, tc.req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Errorf("%s: code %v (%v), want InvalidArgument", tc.name, st.Code(), err)
				continue
			}
			var reason raftqv1.ErrorDetail_Reason
			var fields []string
			for _, d := range st.Details() {
				switch d := d.(type) {
				case *raftqv1.ErrorDetail:
					reason = d.Reason
				case *errdetails.BadRequest:
					for _, v := range d.FieldViolations {
						fields = append(fields, v.Field)
					}
				}
			}
			if reason != tc.reason || fmt.Sprint(fields) != fmt.Sprint([]string{tc.field}) {
				t.Errorf("%s: reason %v fields %v (%q), want %v [%s]", tc.name, reason, fields, st.Message(), tc.reason, tc.field)
			}
		}

		// Malformed protobuf on the wire: an incomplete varint, and a
		// string field holding invalid UTF-8.
		for _, raw := range [][]byte{{0x0a, 0xff, 0xff, 0xff}, {0x0a, 0x02, 0xc3, 0x28}} {
			var out []byte
			err := conn.Invoke(ctx, "/raftq.v1.Results/StoreResult", raw, &out, grpc.ForceCodecV2(rawCodec{}))
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "malformed") {
				t.Errorf("malformed protobuf %x: %v, want InvalidArgument", raw, err)
			}
		}
		assertRows(t, s, 0, 0)

		// Right at the limit is accepted.
		atLimit := goodPB()
		atLimit.Output = make([]byte, 1<<20)
		if _, err := cl.StoreResult(ctx, atLimit); err != nil {
			t.Fatalf("output of exactly 1 MiB: %v", err)
		}
		assertRows(t, s, 1, 1)
	})
}

func httpDo(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s %s: body is not JSON: %q", method, url, data)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: content type %q", method, url, ct)
	}
	return resp.StatusCode, m
}

// TestBadInputHTTP: bad JSON writes get 400 with a JSON error body and
// write nothing.
func TestBadInputHTTP(t *testing.T) {
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		s := svcdtest.StartWith(t, configFor(b))
		url := "http://" + s.HTTPAddr() + "/v1/results"
		good := map[string]any{"job_id": "j", "queue": "q", "lease_token": 1, "status": "succeeded", "output": "aGk="}
		with := func(k string, v any) string {
			m := map[string]any{}
			for k, v := range good {
				m[k] = v
			}
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
			data, _ := json.Marshal(m)
			return string(data)
		}
		big := make([]byte, 1<<20+1)
		for _, tc := range []struct {
			name, body string
			code       int
			field      string
		}{
			{"malformed JSON", `{"job_id": "j", `, 400, "body"},
			{"not an object", `[1,2]`, 400, "body"},
			{"trailing data", with("queue", "q") + ` {}`, 400, "body"},
			{"unknown field", with("colour", "red"), 400, "body"},
			{"wrong type", with("lease_token", "seven"), 400, "body"},
			{"negative token", with("lease_token", -1), 400, "body"},
			{"bad base64 output", with("output", "!!"), 400, "output"},
			{"unknown output encoding", with("output_encoding", "hex"), 400, "output_encoding"},
			{"missing job id", with("job_id", nil), 400, "job_id"},
			{"invalid status", with("status", "done"), 400, "status"},
			{"NUL in job id", with("job_id", "a\x00b"), 400, "job_id"},
			{"oversized output", with("output", big), 400, "output"},
			{"body over the transport limit", with("output", make([]byte, 3<<20)), 413, ""},
		} {
			code, m := httpDo(t, "POST", url, tc.body)
			e, _ := m["error"].(map[string]any)
			if code != tc.code || e == nil || e["message"] == "" {
				t.Errorf("%s: %d %v, want %d with an error body", tc.name, code, m, tc.code)
				continue
			}
			if tc.field != "" {
				vs, _ := e["violations"].([]any)
				if len(vs) != 1 || vs[0].(map[string]any)["field"] != tc.field {
					t.Errorf("%s: violations %v, want field %s", tc.name, vs, tc.field)
				}
			}
		}
		assertRows(t, s, 0, 0)
		if code, m := httpDo(t, "POST", url, with("job_id", "j")); code != 200 || m["outcome"] != "stored" {
			t.Fatalf("good write: %d %v", code, m)
		}
		assertRows(t, s, 1, 1)
	})
}

// TestHTTPReads covers the read API: one result, history, a paged and
// filtered listing, and the error answers.
func TestHTTPReads(t *testing.T) {
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		s := svcdtest.StartWith(t, configFor(b))
		base := "http://" + s.HTTPAddr()
		t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
		for i := 0; i < 25; i++ {
			body := fmt.Sprintf(`{"job_id":"job/%02d","queue":"q%d","lease_token":1,"status":"failed","error":"e","finished_at":%q}`,
				i, i%2, t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano))
			if code, m := httpDo(t, "POST", base+"/v1/results", body); code != 200 {
				t.Fatalf("store: %d %v", code, m)
			}
		}
		if code, m := httpDo(t, "POST", base+"/v1/results", `{"job_id":"job/03","queue":"q1","lease_token":2,"status":"succeeded","output":"b2s=","finished_at":"2026-05-01T00:00:03Z"}`); code != 200 || m["outcome"] != "stored" {
			t.Fatalf("replace: %d %v", code, m)
		}
		if code, m := httpDo(t, "POST", base+"/v1/results", `{"job_id":"job/03","queue":"q1","lease_token":1,"status":"failed"}`); code != 409 || m["error"].(map[string]any)["reason"] != "STALE_TOKEN" {
			t.Fatalf("stale: %d %v", code, m)
		}

		code, m := httpDo(t, "GET", base+"/v1/results/job%2F03", "")
		if code != 200 || m["status"] != "succeeded" || m["output"] != "ok" || m["output_encoding"] != "text" || m["lease_token"] != 2.0 {
			t.Fatalf("get: %d %v", code, m)
		}
		code, m = httpDo(t, "GET", base+"/v1/results/job%2F03/attempts", "")
		atts, _ := m["attempts"].([]any)
		if code != 200 || len(atts) != 2 || atts[0].(map[string]any)["outcome"] != "stored" || atts[1].(map[string]any)["lease_token"] != 2.0 {
			t.Fatalf("attempts: %d %v", code, m)
		}
		if code, _ := httpDo(t, "GET", base+"/v1/results/nope", ""); code != 404 {
			t.Fatalf("missing: %d", code)
		}
		if code, _ := httpDo(t, "GET", base+"/v1/results/nope/attempts", ""); code != 404 {
			t.Fatalf("missing attempts: %d", code)
		}

		// Page through q1 failed results finished in [2s, 20s).
		var got []string
		cursor := ""
		for pages := 0; ; pages++ {
			u := base + "/v1/results?queue=q1&status=failed&page_size=3&finished_after=2026-05-01T00:00:02Z&finished_before=2026-05-01T00:00:20Z"
			if cursor != "" {
				u += "&cursor=" + cursor
			}
			code, m := httpDo(t, "GET", u, "")
			if code != 200 {
				t.Fatalf("list: %d %v", code, m)
			}
			for _, r := range m["results"].([]any) {
				got = append(got, r.(map[string]any)["job_id"].(string))
			}
			cursor, _ = m["next_cursor"].(string)
			if cursor == "" || pages > 10 {
				break
			}
		}
		want := "[job/05 job/07 job/09 job/11 job/13 job/15 job/17 job/19]"
		if fmt.Sprint(got) != want {
			t.Fatalf("listing: %v, want %s", got, want)
		}
		for _, q := range []string{"colour=red", "status=done", "page_size=x", "finished_after=yesterday", "cursor=%21%21"} {
			if code, m := httpDo(t, "GET", base+"/v1/results?"+q, ""); code != 400 {
				t.Errorf("list ?%s: %d %v, want 400", q, code, m)
			}
		}
	})
}

// TestReadiness: /readyz and the gRPC health service follow the database.
func TestReadiness(t *testing.T) {
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		s := svcdtest.StartWith(t, configFor(b))
		hc := healthpb.NewHealthClient(dial(t, s.GRPCAddr()))
		check := func() healthpb.HealthCheckResponse_ServingStatus {
			r, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: server.ServiceName})
			if err != nil {
				t.Fatal(err)
			}
			return r.Status
		}
		if code, _ := httpDo(t, "GET", "http://"+s.HTTPAddr()+"/readyz", ""); code != 200 {
			t.Fatalf("readyz = %d, want 200", code)
		}
		if st := check(); st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health = %v", st)
		}
		// The database goes away.
		s.Store().Close()
		if code, m := httpDo(t, "GET", "http://"+s.HTTPAddr()+"/readyz", ""); code != 503 {
			t.Fatalf("readyz with the database closed = %d %v, want 503", code, m)
		}
		deadline := time.Now().Add(5 * time.Second)
		for check() != healthpb.HealthCheckResponse_NOT_SERVING {
			if time.Now().After(deadline) {
				t.Fatal("gRPC health still SERVING with the database closed")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if code, _ := httpDo(t, "GET", "http://"+s.HTTPAddr()+"/healthz", ""); code != 200 {
			t.Fatalf("healthz = %d: liveness must not depend on the database", code)
		}
	})
}

// TestGracefulShutdown: writers keep going while the server shuts down;
// every write that was answered OK is in the database afterwards.
func TestGracefulShutdown(t *testing.T) {
	svcdtest.Each(t, func(t *testing.T, b svcdtest.Backend) {
		cfg := configFor(b)
		s, err := server.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		s.Start()
		cl := raftqv1.NewResultsClient(dial(t, s.GRPCAddr()))
		var ok atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					r := goodPB()
					r.JobId = fmt.Sprintf("g%d-%d", g, i)
					if _, err := cl.StoreResult(context.Background(), r); err != nil {
						return
					}
					ok.Add(1)
				}
			}()
		}
		time.Sleep(200 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
		wg.Wait()
		if ok.Load() == 0 {
			t.Fatal("no write succeeded before shutdown")
		}
		st, err := store.Open(context.Background(), store.Config{Driver: b.Driver, DSN: b.DSN, DataDir: b.DataDir})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		stats, err := st.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if stats.Results != ok.Load() {
			t.Fatalf("%d writes answered OK, %d rows stored", ok.Load(), stats.Results)
		}
	})
}

// TestRateLimit: over the configured rate requests are refused with
// RESOURCE_EXHAUSTED / 429 and not executed.
func TestRateLimit(t *testing.T) {
	cfg := configFor(svcdtest.SQLite(t))
	cfg.RateLimit, cfg.RateBurst = 0.001, 2
	s := svcdtest.StartWith(t, cfg)
	cl := raftqv1.NewResultsClient(dial(t, s.GRPCAddr()))
	for i := 0; i < 2; i++ {
		r := goodPB()
		r.JobId = fmt.Sprint("j", i)
		if _, err := cl.StoreResult(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	_, err := cl.StoreResult(context.Background(), goodPB())
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("over the rate: %v, want ResourceExhausted", err)
	}
	if code, _ := httpDo(t, "GET", "http://"+s.HTTPAddr()+"/v1/results/j0", ""); code != http.StatusTooManyRequests {
		t.Fatalf("HTTP over the rate: %d, want 429", code)
	}
}

// TestHTTPOutputEncoding: a UTF-8 output reads back as its text, other
// bytes as base64 flagged output_encoding "base64"; both forms round-trip
// through a write, and a text write is stored byte for byte.
func TestHTTPOutputEncoding(t *testing.T) {
	s := svcdtest.StartWith(t, configFor(svcdtest.SQLite(t)))
	base := "http://" + s.HTTPAddr() + "/v1/results"
	for i, tc := range []struct {
		name, body  string
		stored      []byte
		output, enc string
	}{
		{"base64 text (old clients)", `"output":"aGVsbG8="`, []byte("hello"), "hello", "text"},
		{"text", `"output":"héllo\n{\"a\":1}","output_encoding":"text"`, []byte("héllo\n{\"a\":1}"), "héllo\n{\"a\":1}", "text"},
		{"binary", `"output":"/wD+","output_encoding":"base64"`, []byte{0xff, 0x00, 0xfe}, "/wD+", "base64"},
		{"no output", `"status":"succeeded"`, nil, "", ""},
	} {
		id := fmt.Sprintf("enc-%d", i)
		body := fmt.Sprintf(`{"job_id":%q,"queue":"q","lease_token":1,"status":"succeeded",%s}`, id, strings.Replace(tc.body, `"status":"succeeded"`, `"error":""`, 1))
		if code, m := httpDo(t, "POST", base, body); code != 200 {
			t.Fatalf("%s: store %d %v", tc.name, code, m)
		}
		r, err := s.Store().GetResult(context.Background(), id)
		if err != nil || !bytes.Equal(r.Output, tc.stored) {
			t.Fatalf("%s: stored %q %v, want %q", tc.name, r.Output, err, tc.stored)
		}
		code, m := httpDo(t, "GET", base+"/"+id, "")
		got, _ := m["output"].(string)
		enc, _ := m["output_encoding"].(string)
		if code != 200 || got != tc.output || enc != tc.enc {
			t.Fatalf("%s: read output %q encoding %q, want %q %q", tc.name, got, enc, tc.output, tc.enc)
		}
	}
}

// listServices asks the reflection service which services cc serves.
func listServices(ctx context.Context, cc *grpc.ClientConn) ([]string, error) {
	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	// A server that refuses the stream may end it before the request is
	// sent: Send then reports io.EOF and the status is only in Recv's error.
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, sv := range resp.GetListServicesResponse().GetService() {
		names = append(names, sv.GetName())
	}
	return names, nil
}

// TestGRPCReflection: grpcurl-style clients can list svcd's services.
func TestGRPCReflection(t *testing.T) {
	s := svcdtest.StartWith(t, configFor(svcdtest.SQLite(t)))
	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	names, err := listServices(ctx, cc)
	if err != nil || !slices.Contains(names, "raftq.v1.Results") {
		t.Fatalf("reflection lists %v (%v), want raftq.v1.Results", names, err)
	}
}
