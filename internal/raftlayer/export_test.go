package raftlayer

import "crypto/tls"

type tlsConnState = tls.ConnectionState
