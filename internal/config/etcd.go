package config

import (
	"net/url"
	"strings"
)

// CheckEtcdEndpoints reports, as an *Error on key, the first etcd
// endpoint a daemon running with TLS (secure) must not use: anything but
// an https:// URL. Live config, registrations, the leader hint and the
// bootstrap record live in etcd; over http they would cross the network
// in clear to an etcd that cannot tell who writes them. Without secure
// every endpoint passes (the plaintext development profile).
func (l *Loader) CheckEtcdEndpoints(key string, endpoints []string, secure bool) error {
	if !secure {
		return nil
	}
	for _, ep := range endpoints {
		u, err := url.Parse(strings.TrimSpace(ep))
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return l.Errorf(key, "%q is not an https:// URL, and TLS is on: raftq talks to etcd over TLS with its certificate only (use https://host:port)", ep)
		}
	}
	return nil
}
