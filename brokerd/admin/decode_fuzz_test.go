package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

type memberReq struct {
	NodeID   string `json:"node_id"`
	RaftAddr string `json:"raft_addr"`
	GRPCAddr string `json:"grpc_addr"`
}

type transferReq struct {
	NodeID string `json:"node_id"`
}

// FuzzDecodeJSON feeds arbitrary bodies to the admin API's JSON decoding
// (every request shape it reads). Nothing may panic; a refusal is a 400
// (bad JSON, unknown field, trailing data) or a 413 (over the body
// limit), never a 500; and what is accepted decodes again, unchanged,
// from its own encoding (nothing half-read).
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{
		`{"node_id":"n4","raft_addr":"127.0.0.1:7204","grpc_addr":"127.0.0.1:7104"}`,
		`{"node_id":"n2"}`,
		`{"job_ids":["a","b"],"limit":10,"all":false}`,
		`{"all":true,"limit":100}`,
		``, `{}`, `null`, `[]`, `{"job_ids":null}`, `{"limit":1e400}`, `{"limit":-1}`,
		`{"node_id":"x"}{"node_id":"y"}`, `{"unknown":1}`, `{"node_id":"\ud800"}`, `{"limit":2147483648}`,
	} {
		f.Add(uint8(0), []byte(seed))
		f.Add(uint8(1), []byte(seed))
		f.Add(uint8(2), []byte(seed))
	}
	s := &Server{cfg: Config{MaxBodyBytes: 512}}
	shapes := []func() any{
		func() any { return &memberReq{} },
		func() any { return &transferReq{} },
		func() any { return &dlqRequest{} },
		func() any { return &struct{}{} }, // noBody
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		mk := shapes[int(kind)%len(shapes)]
		v := mk()
		r := httptest.NewRequest(http.MethodPost, "/v1/x", bytes.NewReader(body))
		w := httptest.NewRecorder()
		err := s.decode(w, r, v)
		if err != nil {
			var mbe *http.MaxBytesError
			if st := toAPIError(err).status; st != http.StatusBadRequest && !(errors.As(err, &mbe) && st == http.StatusRequestEntityTooLarge) {
				t.Fatalf("refused with status %d: %v", st, err)
			}
			return
		}
		if len(body) > 512 {
			t.Fatalf("accepted a %d-byte body over the 512-byte limit", len(body))
		}
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("accepted value does not encode: %v", err)
		}
		again := mk()
		r2 := httptest.NewRequest(http.MethodPost, "/v1/x", bytes.NewReader(enc))
		if err := s.decode(httptest.NewRecorder(), r2, again); err != nil && len(enc) <= 512 {
			t.Fatalf("re-encoded %s refused: %v", enc, err)
		}
		if len(enc) <= 512 && !reflect.DeepEqual(v, again) {
			t.Fatalf("round trip changed the value: %#v -> %s -> %#v", v, enc, again)
		}
	})
}
