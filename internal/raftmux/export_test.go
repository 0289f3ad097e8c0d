package raftmux

import (
	"log/slog"
	"time"
)

// ListenWith is Listen with the limits shortened, so tests need not wait
// HeaderTimeout or RefusalLogInterval out.
func ListenWith(addr string, logger *slog.Logger, headerTimeout time.Duration, maxPending, backlog int, logInterval time.Duration) (*Mux, error) {
	return listen(addr, "", logger, options{headerTimeout: headerTimeout, maxPending: maxPending, backlog: backlog, logInterval: logInterval})
}
