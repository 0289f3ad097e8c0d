package fsm

import (
	"errors"
	"fmt"

	"github.com/raftq/raftq/fsm/fsmpb"
	"google.golang.org/protobuf/proto"
)

// EntryVersion is the only fsmpb.Entry version this FSM understands. A node
// that meets another version stops (Apply panics) rather than guess: a
// skipped or misread entry would make it diverge from its peers.
const EntryVersion = 1

// errDecode is wrapped by every Decode error.
var errDecode = errors.New("fsm: bad entry")

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// Encode validates e and marshals it for a Raft log entry. It refuses what
// Decode would refuse, so that a leader bug fails the one proposal instead
// of making every node panic in Apply.
func Encode(e *fsmpb.Entry) ([]byte, error) {
	if err := validate(e); err != nil {
		return nil, err
	}
	return marshalOpts.Marshal(e)
}

// Decode parses a Raft log entry. It never panics; it errors on bytes that
// are not an Entry, on a version other than EntryVersion, and on a command
// whose type is unknown or whose body does not match its type (a newer
// leader's command must stop an older node, not be skipped).
func Decode(b []byte) (*fsmpb.Entry, error) {
	e := &fsmpb.Entry{}
	if err := proto.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("%w: %v", errDecode, err)
	}
	if err := validate(e); err != nil {
		return nil, err
	}
	return e, nil
}

func validate(e *fsmpb.Entry) error {
	if e == nil {
		return fmt.Errorf("%w: nil entry", errDecode)
	}
	if e.GetVersion() != EntryVersion {
		return fmt.Errorf("%w: version %d, want %d", errDecode, e.GetVersion(), EntryVersion)
	}
	for i, c := range e.GetCommands() {
		if c == nil {
			return fmt.Errorf("%w: command %d is nil", errDecode, i)
		}
		if !bodyMatches(c) {
			return fmt.Errorf("%w: command %d: type %v with body %T", errDecode, i, c.GetType(), c.GetBody())
		}
	}
	return nil
}

func bodyMatches(c *fsmpb.Command) bool {
	switch c.GetType() {
	case fsmpb.CommandType_COMMAND_TYPE_ENQUEUE:
		return c.GetEnqueue() != nil
	case fsmpb.CommandType_COMMAND_TYPE_LEASE:
		return c.GetLease() != nil
	case fsmpb.CommandType_COMMAND_TYPE_EXTEND_LEASE:
		return c.GetExtendLease() != nil
	case fsmpb.CommandType_COMMAND_TYPE_ACK:
		return c.GetAck() != nil
	case fsmpb.CommandType_COMMAND_TYPE_NACK:
		return c.GetNack() != nil
	case fsmpb.CommandType_COMMAND_TYPE_EXPIRE_LEASES:
		return c.GetExpireLeases() != nil
	case fsmpb.CommandType_COMMAND_TYPE_PROMOTE:
		return c.GetPromote() != nil
	case fsmpb.CommandType_COMMAND_TYPE_CANCEL:
		return c.GetCancel() != nil
	case fsmpb.CommandType_COMMAND_TYPE_PAUSE_QUEUE:
		return c.GetPauseQueue() != nil
	case fsmpb.CommandType_COMMAND_TYPE_RESUME_QUEUE:
		return c.GetResumeQueue() != nil
	case fsmpb.CommandType_COMMAND_TYPE_REDRIVE:
		return c.GetRedrive() != nil
	case fsmpb.CommandType_COMMAND_TYPE_PURGE:
		return c.GetPurge() != nil
	case fsmpb.CommandType_COMMAND_TYPE_SET_NODE:
		return c.GetSetNode() != nil
	case fsmpb.CommandType_COMMAND_TYPE_DELETE_DEAD:
		return c.GetDeleteDead() != nil
	}
	return false
}
