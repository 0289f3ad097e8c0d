package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// RegisterOptions tune a Registration.
type RegisterOptions struct {
	// TTL of the lease (default 10s, at least 2s; etcd counts whole
	// seconds). A crashed instance's key disappears this long after its
	// last keep-alive.
	TTL time.Duration
	// OpTimeout bounds each etcd call (default 5s).
	OpTimeout time.Duration
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Registration keeps one instance's key in etcd under a lease, for as long
// as it is open: it grants a lease, writes the key with it and keeps the
// lease alive; when the lease is lost (etcd was unreachable for longer than
// the TTL, or lost its data) it starts over with a new one, so the key
// comes back by itself once etcd does. Close revokes the lease, removing
// the key at once.
type Registration struct {
	cli   *clientv3.Client
	key   string
	value string
	opts  RegisterOptions
	log   *slog.Logger

	mu      sync.Mutex
	lease   clientv3.LeaseID
	changed chan struct{}
	// granted is the newest lease granted, set before its Put: a Put cut
	// short by Close may still have been applied, so Close revokes this one
	// rather than only the lease the loop has finished registering with.
	granted clientv3.LeaseID

	stop chan struct{}
	done chan struct{}
}

// Register starts keeping inst registered as an instance of service under
// prefix. It returns at once: etcd need not be reachable yet.
func Register(cli *clientv3.Client, prefix, service string, inst Instance, opts RegisterOptions) (*Registration, error) {
	if cli == nil {
		return nil, errors.New("register: no etcd client")
	}
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if service == "" || strings.Contains(service, "/") {
		return nil, fmt.Errorf("register: service %q must be a non-empty name without '/'", service)
	}
	if inst.ID == "" || strings.Contains(inst.ID, "/") {
		return nil, fmt.Errorf("register: instance id %q must be non-empty and contain no '/'", inst.ID)
	}
	if inst.Addr == "" {
		return nil, errors.New("register: instance address is required")
	}
	if opts.TTL <= 0 {
		opts.TTL = 10 * time.Second
	}
	if opts.TTL < 2*time.Second {
		opts.TTL = 2 * time.Second
	}
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	value, err := encodeInstance(inst)
	if err != nil {
		return nil, err
	}
	r := &Registration{
		cli:     cli,
		key:     InstanceKey(prefix, service, inst.ID),
		value:   value,
		opts:    opts,
		log:     opts.Logger.With("etcd_key", InstanceKey(prefix, service, inst.ID)),
		changed: make(chan struct{}),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go r.loop()
	return r, nil
}

// Key is the registered key.
func (r *Registration) Key() string { return r.key }

// Lease returns the lease the key is currently written with (0 while not
// registered) and a channel closed when that changes. Others tie keys to
// the instance's life with it (the leader hint).
func (r *Registration) Lease() (clientv3.LeaseID, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease, r.changed
}

func (r *Registration) setLease(id clientv3.LeaseID) {
	r.mu.Lock()
	if r.lease != id {
		r.lease = id
		close(r.changed)
		r.changed = make(chan struct{})
	}
	r.mu.Unlock()
}

func (r *Registration) ctx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.OpTimeout)
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (r *Registration) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// loop registers, keeps alive, and registers again after a loss.
func (r *Registration) loop() {
	defer close(r.done)
	backoff := 100 * time.Millisecond
	wait := func() bool {
		select {
		case <-r.stop:
			return false
		case <-time.After(backoff):
		}
		if backoff < 2*time.Second {
			backoff *= 2
		}
		return true
	}
	for !r.stopped() {
		lease, err := r.register()
		if err != nil {
			if !r.stopped() {
				r.log.Debug("etcd registration failed; retrying", "err", err)
			}
			if !wait() {
				return
			}
			continue
		}
		backoff = 100 * time.Millisecond
		r.setLease(lease)
		r.log.Debug("registered in etcd", "lease", int64(lease))
		r.keepAlive(lease)
		r.setLease(0)
		if r.stopped() {
			return
		}
		r.log.Info("etcd registration lost; registering again")
		// Tidy: the old lease may still be alive on the server.
		ctx, cancel := r.ctx()
		_, _ = r.cli.Revoke(ctx, lease)
		cancel()
	}
}

func (r *Registration) register() (clientv3.LeaseID, error) {
	ctx, cancel := r.ctx()
	defer cancel()
	g, err := r.cli.Grant(ctx, int64((r.opts.TTL+time.Second-1)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	r.mu.Lock()
	r.granted = g.ID
	r.mu.Unlock()
	if _, err := r.cli.Put(ctx, r.key, r.value, clientv3.WithLease(g.ID)); err != nil {
		return 0, fmt.Errorf("put %s: %w", r.key, err)
	}
	return g.ID, nil
}

// keepAlive keeps lease alive until it is lost or the registration stops.
// Every TTL it also checks that the key still holds this registration (a
// restored or wiped etcd, an operator's delete) and writes it again if not.
func (r *Registration) keepAlive(lease clientv3.LeaseID) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	ka, err := r.cli.KeepAlive(ctx, lease)
	if err != nil {
		return
	}
	check := time.NewTicker(r.opts.TTL)
	defer check.Stop()
	for {
		select {
		case _, ok := <-ka:
			if !ok {
				return // lease expired (etcd away longer than the TTL) or stopped
			}
		case <-check.C:
			cctx, ccancel := r.ctx()
			g, err := r.cli.Get(cctx, r.key)
			if err == nil && (len(g.Kvs) == 0 || string(g.Kvs[0].Value) != r.value || clientv3.LeaseID(g.Kvs[0].Lease) != lease) {
				r.log.Info("etcd registration missing; writing it again")
				_, err = r.cli.Put(cctx, r.key, r.value, clientv3.WithLease(lease))
				if err != nil {
					ccancel()
					return
				}
			}
			ccancel()
		case <-r.stop:
			return
		}
	}
}

// Close stops keeping the key alive and revokes the lease, which deletes
// the key (and anything else written with the lease, such as the leader
// hint). The revoke is best effort within ctx: if etcd is down the key
// disappears when its TTL runs out.
func (r *Registration) Close(ctx context.Context) error {
	select {
	case <-r.stop:
		<-r.done
		return nil
	default:
	}
	close(r.stop)
	<-r.done
	r.mu.Lock()
	lease := r.granted
	r.mu.Unlock()
	if lease == 0 {
		return nil
	}
	_, err := r.cli.Revoke(ctx, lease)
	return err
}

// Abandon stops keeping the key alive without revoking the lease, as a
// crash would: the key disappears when its TTL runs out. Tests use it to
// stand in for a killed process.
func (r *Registration) Abandon() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}
