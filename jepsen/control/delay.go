package control

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Packet delay with jitter. The kernel here has no netem, but it has the
// NFQUEUE target: an iptables rule in a node's namespace hands every packet
// the node sends to a user-space delayer (RunDelayer, the "jepsen delayd"
// subcommand started inside that namespace), which holds each packet for
// delay ± jitter and then lets it go. --queue-bypass lets packets pass
// untouched whenever no delayer listens, so a crashed delayer never cuts a
// node off. The netlink protocol (nfnetlink_queue) is spoken directly over a
// raw socket: a few fixed structs, no library needed.

const (
	nfnlSubsysQueue  = 3
	nfqnlMsgPacket   = 0
	nfqnlMsgVerdict  = 1
	nfqnlMsgConfig   = 2
	nfqaPacketHdr    = 1
	nfqaVerdictHdr   = 2
	nfqaCfgCmd       = 1
	nfqaCfgParams    = 2
	nfqaCfgQueueLen  = 3
	nfqnlCfgCmdBind  = 1
	nfqnlCopyMeta    = 1
	nfAccept         = 1
	delayQueueNumber = 7
)

// Delay makes node i's outgoing packets wait delay ± jitter: it starts a
// delayer in the node's namespace (self is the jepsen binary) and queues
// the node's outgoing packets to it. A zero delay removes both.
func (nw *Network) Delay(i int, self string, delay, jitter time.Duration) error {
	ns := nw.NodeNS(i)
	nw.mu.Lock()
	old := nw.delayers[i]
	delete(nw.delayers, i)
	nw.mu.Unlock()
	if old != nil {
		_ = inNS(ns, "iptables", "-D", "OUTPUT", "-o", "eth0", "-j", "NFQUEUE",
			"--queue-num", strconv.Itoa(delayQueueNumber), "--queue-bypass")
		time.Sleep(100 * time.Millisecond) // let held packets go
		_ = old.Process.Kill()
	}
	if delay <= 0 {
		return nil
	}
	cmd := exec.Command("ip", "netns", "exec", ns, self, "delayd",
		"--queue", strconv.Itoa(delayQueueNumber), "--delay", delay.String(), "--jitter", jitter.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }()
	if err := inNS(ns, "iptables", "-A", "OUTPUT", "-o", "eth0", "-j", "NFQUEUE",
		"--queue-num", strconv.Itoa(delayQueueNumber), "--queue-bypass"); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	nw.mu.Lock()
	nw.delayers[i] = cmd
	nw.mu.Unlock()
	return nil
}

// nlAttr encodes one netlink attribute, padded to 4 bytes.
func nlAttr(typ uint16, payload []byte) []byte {
	l := 4 + len(payload)
	b := make([]byte, (l+3)&^3)
	binary.LittleEndian.PutUint16(b[0:], uint16(l))
	binary.LittleEndian.PutUint16(b[2:], typ)
	copy(b[4:], payload)
	return b
}

// nfqMsg builds one nfnetlink_queue message for queue.
func nfqMsg(msgType uint16, flags uint16, seq uint32, queue uint16, attrs ...[]byte) []byte {
	body := []byte{syscall.AF_UNSPEC, 0, 0, 0} // nfgenmsg: family, version, res_id (big endian)
	binary.BigEndian.PutUint16(body[2:], queue)
	for _, a := range attrs {
		body = append(body, a...)
	}
	b := make([]byte, 16, 16+len(body))
	binary.LittleEndian.PutUint32(b[0:], uint32(16+len(body)))
	binary.LittleEndian.PutUint16(b[4:], nfnlSubsysQueue<<8|msgType)
	binary.LittleEndian.PutUint16(b[6:], flags)
	binary.LittleEndian.PutUint32(b[8:], seq)
	return append(b, body...)
}

// RunDelayer binds NFQUEUE queue in the current network namespace and
// releases each packet after delay plus a uniform jitter in [-jitter,
// +jitter]. It runs until the process is killed.
func RunDelayer(queue uint16, delay, jitter time.Duration) error {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW, syscall.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
	var mu sync.Mutex
	send := func(b []byte) error {
		mu.Lock()
		defer mu.Unlock()
		return syscall.Sendto(fd, b, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK})
	}
	cmd := []byte{nfqnlCfgCmdBind, 0, 0, 0}
	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params[0:], 0) // copy range: metadata only
	params[4] = nfqnlCopyMeta
	qlen := make([]byte, 4)
	binary.BigEndian.PutUint32(qlen, 8192)
	for seq, m := range [][]byte{
		nfqMsg(nfqnlMsgConfig, syscall.NLM_F_REQUEST|syscall.NLM_F_ACK, 1, queue, nlAttr(nfqaCfgCmd, cmd)),
		nfqMsg(nfqnlMsgConfig, syscall.NLM_F_REQUEST|syscall.NLM_F_ACK, 2, queue, nlAttr(nfqaCfgParams, params)),
		nfqMsg(nfqnlMsgConfig, syscall.NLM_F_REQUEST|syscall.NLM_F_ACK, 3, queue, nlAttr(nfqaCfgQueueLen, qlen)),
	} {
		if err := send(m); err != nil {
			return fmt.Errorf("nfqueue config %d: %w", seq, err)
		}
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	var rngMu sync.Mutex
	hold := func() time.Duration {
		rngMu.Lock()
		defer rngMu.Unlock()
		d := delay
		if jitter > 0 {
			d += time.Duration(rng.Int63n(int64(2*jitter)+1)) - jitter
		}
		return max(d, 0)
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.ENOBUFS) {
				continue
			}
			return fmt.Errorf("netlink recv: %w", err)
		}
		for off := 0; off+16 <= n; {
			l := int(binary.LittleEndian.Uint32(buf[off:]))
			if l < 16 || off+l > n {
				break
			}
			typ := binary.LittleEndian.Uint16(buf[off+4:])
			msg := buf[off : off+l]
			off += (l + 3) &^ 3
			if typ == syscall.NLMSG_ERROR {
				if code := int32(binary.LittleEndian.Uint32(msg[16:])); code != 0 {
					return fmt.Errorf("nfqueue: kernel refused configuration: %v", syscall.Errno(-code))
				}
				continue
			}
			if typ != nfnlSubsysQueue<<8|nfqnlMsgPacket {
				continue
			}
			// Attributes follow the 16-byte header and 4-byte nfgenmsg.
			for a := 20; a+4 <= len(msg); {
				al := int(binary.LittleEndian.Uint16(msg[a:]))
				at := binary.LittleEndian.Uint16(msg[a+2:]) & 0x7fff
				if al < 4 || a+al > len(msg) {
					break
				}
				if at == nfqaPacketHdr && al >= 8 {
					id := binary.BigEndian.Uint32(msg[a+4:])
					v := make([]byte, 8)
					binary.BigEndian.PutUint32(v[0:], nfAccept)
					binary.BigEndian.PutUint32(v[4:], id)
					verdict := nfqMsg(nfqnlMsgVerdict, syscall.NLM_F_REQUEST, 0, queue, nlAttr(nfqaVerdictHdr, v))
					time.AfterFunc(hold(), func() { _ = send(verdict) })
					break
				}
				a += (al + 3) &^ 3
			}
		}
	}
}
