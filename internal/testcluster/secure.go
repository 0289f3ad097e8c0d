package testcluster

import (
	"github.com/raftq/raftq/brokerd"
	"github.com/raftq/raftq/internal/auth"
	"github.com/raftq/raftq/internal/certgen"
	"github.com/raftq/raftq/internal/tlsutil"
)

// Secure is a Tune that turns TLS and auth on, as the secure profile
// does: each node serves with its "node.<id>" certificate from pki (made
// by certgen.NewDev with the cluster's node ids), accepts the tokens in
// tokensFile, and knows its peers by the certificate names "node.*".
func Secure(pki *certgen.Dev, tokensFile string) func(*brokerd.Config) {
	return func(cfg *brokerd.Config) {
		name := "node." + cfg.NodeID
		cfg.TLS = brokerd.TLSConfig{Files: tlsutil.Files{CA: pki.CAFile(), Cert: pki.CertFile(name), Key: pki.KeyFile(name)}}
		cfg.Auth = auth.Config{TokensFile: tokensFile, NodeNames: []string{"node.*"}}
	}
}
