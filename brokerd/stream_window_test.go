package brokerd

import (
	"context"
	"io"
	"sync"
	"testing"
	"testing/synctest"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
)

// fakeEnqueueStream serves frames to Recv (then io.EOF) and records what
// Recv was called for and what was sent.
type fakeEnqueueStream struct {
	mu     sync.Mutex
	frames []*raftqv1.EnqueueStreamRequest
	recvs  int
	sent   []*raftqv1.EnqueueStreamResponse
}

func (f *fakeEnqueueStream) Recv() (*raftqv1.EnqueueStreamRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recvs++
	if len(f.frames) == 0 {
		return nil, io.EOF
	}
	r := f.frames[0]
	f.frames = f.frames[1:]
	return r, nil
}

func (f *fakeEnqueueStream) Send(r *raftqv1.EnqueueStreamResponse) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, r)
	return nil
}

func (f *fakeEnqueueStream) counts() (recvs, sent int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recvs, len(f.sent)
}

// heldAnswers keeps the answer functions of frames whose "proposal" has
// not finished, so the test decides when each is answered.
type heldAnswers struct {
	mu   sync.Mutex
	held []func(*raftqv1.EnqueueResult, error)
}

func (h *heldAnswers) handle(_ *raftqv1.EnqueueStreamRequest, answer func(*raftqv1.EnqueueResult, error)) error {
	h.mu.Lock()
	h.held = append(h.held, answer)
	h.mu.Unlock()
	return nil
}

// release answers up to n held frames (all when n < 0) and says how many.
func (h *heldAnswers) release(n int) int {
	h.mu.Lock()
	if n < 0 || n > len(h.held) {
		n = len(h.held)
	}
	rel := h.held[:n]
	h.held = h.held[n:]
	h.mu.Unlock()
	for _, a := range rel {
		a(&raftqv1.EnqueueResult{JobId: "j"}, nil)
	}
	return n
}

func frames(seqs ...uint64) []*raftqv1.EnqueueStreamRequest {
	out := make([]*raftqv1.EnqueueStreamRequest, len(seqs))
	for i, s := range seqs {
		out[i] = &raftqv1.EnqueueStreamRequest{Seq: s}
	}
	return out
}

// The stream's window is back-pressure: with 4 jobs unanswered the
// pipeline stops calling Recv (checked when every goroutine is blocked,
// so the count is exact), reads exactly as many more frames as answers go
// out, and ends cleanly when the producer closes its side and every frame
// read is answered.
func TestStreamWindowStopsReading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &fakeEnqueueStream{frames: frames(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)}
		h := &heldAnswers{}
		done := make(chan error, 1)
		go func() { done <- streamPipeline(context.Background(), st, 4, nil, nil, h.handle) }()

		synctest.Wait()
		if recvs, sent := st.counts(); recvs != 4 || sent != 0 {
			t.Fatalf("window full: %d frames read, %d answered; want 4 read, none answered", recvs, sent)
		}
		h.release(2)
		synctest.Wait()
		if recvs, sent := st.counts(); recvs != 6 || sent != 2 {
			t.Fatalf("after 2 answers: %d frames read, %d answered; want 6 and 2", recvs, sent)
		}
		for {
			synctest.Wait()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("pipeline ended with %v after the producer closed", err)
				}
				recvs, sent := st.counts()
				if recvs != 11 || sent != 10 {
					t.Fatalf("%d Recv calls and %d answers; want 11 (10 frames and EOF) and 10", recvs, sent)
				}
				for i, r := range st.sent {
					if r.Seq != uint64(i+1) || r.Result.GetJobId() != "j" {
						t.Fatalf("answer %d: %v", i, r)
					}
				}
				return
			default:
			}
			if h.release(-1) == 0 {
				t.Fatal("pipeline blocked with nothing to answer")
			}
		}
	})
}

// A seq reused while its frame is unanswered, or a frame without seq,
// ends the stream with InvalidArgument — after the frames handled before
// it are answered; nothing after it is handled.
func TestStreamBadSeqEndsStream(t *testing.T) {
	for name, seqs := range map[string][]uint64{"reused": {1, 1, 2}, "zero": {1, 0, 2}} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := &fakeEnqueueStream{frames: frames(seqs...)}
				h := &heldAnswers{}
				done := make(chan error, 1)
				go func() { done <- streamPipeline(context.Background(), st, 8, nil, nil, h.handle) }()
				synctest.Wait()
				select {
				case err := <-done:
					t.Fatalf("ended with %v before frame 1 was answered", err)
				default:
				}
				h.release(-1)
				err := <-done
				if status.Code(err) != codes.InvalidArgument {
					t.Fatalf("bad seq: %v, want InvalidArgument", err)
				}
				// Frame 3 may have been read ahead; it is dropped unanswered.
				if recvs, sent := st.counts(); recvs < 2 || sent != 1 || st.sent[0].Seq != 1 {
					t.Fatalf("%d frames read, %d answered (%v); want frame 1 answered, no other", recvs, sent, st.sent)
				}
			})
		})
	}
}

// Closing stop (the node shutting down) ends even an idle stream: the
// frames being handled are answered first, nothing more is handled, and
// the stream ends with stopErr.
func TestStreamStopEndsStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &fakeEnqueueStream{frames: frames(1, 2, 3, 4, 5, 6)}
		h := &heldAnswers{}
		stop := make(chan struct{})
		errStop := status.Error(codes.Unavailable, "stopping")
		done := make(chan error, 1)
		go func() {
			done <- streamPipeline(context.Background(), st, 4, stop, func() error { return errStop }, h.handle)
		}()
		synctest.Wait()
		close(stop)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("ended with %v before the handled frames were answered", err)
		default:
		}
		if n := h.release(-1); n != 4 {
			t.Fatalf("%d frames handled before the stop, want 4 (the window)", n)
		}
		if err := <-done; err != errStop {
			t.Fatalf("stopped stream ended with %v", err)
		}
		synctest.Wait()
		if h.release(-1) != 0 {
			t.Fatal("a frame was handled after the stop")
		}
		if _, sent := st.counts(); sent != 4 {
			t.Fatalf("%d answers, want the 4 handled frames", sent)
		}
	})
}

// An idle stream (no frame at all) ends at once when stop closes.
func TestStreamStopEndsIdleStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &blockingStream{release: make(chan struct{})}
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- streamPipeline(context.Background(), st, 4, stop, func() error { return io.ErrClosedPipe }, func(*raftqv1.EnqueueStreamRequest, func(*raftqv1.EnqueueResult, error)) error {
				t.Error("an idle stream handled a frame")
				return nil
			})
		}()
		synctest.Wait()
		close(stop)
		if err := <-done; err != io.ErrClosedPipe {
			t.Fatalf("idle stream ended with %v", err)
		}
		close(st.release) // the transport ends the receiver's Recv
	})
}

// blockingStream's Recv blocks until release, as an idle producer's does
// until the stream ends.
type blockingStream struct{ release chan struct{} }

func (b *blockingStream) Recv() (*raftqv1.EnqueueStreamRequest, error) {
	<-b.release
	return nil, io.EOF
}

func (b *blockingStream) Send(*raftqv1.EnqueueStreamResponse) error { return nil }
