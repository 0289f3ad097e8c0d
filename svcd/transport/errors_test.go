package transport

import (
	"net/http"
	"testing"

	"github.com/raftq/raftq/svcd/service"
	"google.golang.org/grpc/codes"
)

// TestEveryKindMapped: a kind without a row would silently become INTERNAL.
func TestEveryKindMapped(t *testing.T) {
	kinds := []service.Kind{
		service.KindInvalidArgument, service.KindTooLarge, service.KindStaleToken, service.KindNotFound,
		service.KindRateLimited, service.KindUnavailable, service.KindCanceled, service.KindDeadlineExceeded,
		service.KindInternal, service.KindUnauthenticated, service.KindPermissionDenied,
		service.KindUnknownJob, service.KindBrokerUnavailable,
	}
	for _, k := range kinds {
		m, ok := statusOf[k]
		if !ok {
			t.Errorf("kind %s has no mapping", k)
			continue
		}
		if m.code == codes.OK || m.http < 400 {
			t.Errorf("kind %s maps to %v / %d", k, m.code, m.http)
		}
	}
	if statusOf[service.KindInvalidArgument].http != http.StatusBadRequest || statusOf[service.KindTooLarge].code != codes.InvalidArgument {
		t.Error("bad input must be INVALID_ARGUMENT / 400")
	}
}
