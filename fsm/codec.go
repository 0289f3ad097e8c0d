package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

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

// A log entry on disk and on the wire is a checksummed frame around the
// marshalled fsmpb.Entry: frameMagic, then the CRC-32C (Castagnoli) of the
// Entry bytes, big-endian, then the bytes. Neither bbolt nor hashicorp/raft
// checksums entry data, and a flipped bit in a job id still decodes as a
// valid command for another job: without the checksum the node holding the
// bad copy would apply something its peers did not, and diverge (the
// jepsen corrupt nemesis showed it re-leasing acked jobs once it led). With
// it, Decode refuses the entry and Apply stops the node instead.
const (
	frameMagic  byte = 0xC5
	frameHeader      = 5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrChecksum is wrapped by Decode's error for an entry whose bytes do not
// match their checksum: a corrupted log on this node's disk.
var ErrChecksum = errors.New("fsm: log entry checksum mismatch (corrupted on disk or in transit)")

// frame wraps marshalled Entry bytes in the checksummed frame.
func frame(body []byte) []byte {
	out := make([]byte, frameHeader+len(body))
	out[0] = frameMagic
	binary.BigEndian.PutUint32(out[1:frameHeader], crc32.Checksum(body, castagnoli))
	copy(out[frameHeader:], body)
	return out
}

// Encode validates e and marshals it, in its checksummed frame, for a Raft
// log entry. It refuses what Decode would refuse, so that a leader bug
// fails the one proposal instead of making every node panic in Apply.
func Encode(e *fsmpb.Entry) ([]byte, error) {
	if err := validate(e); err != nil {
		return nil, err
	}
	body, err := marshalOpts.Marshal(e)
	if err != nil {
		return nil, err
	}
	return frame(body), nil
}

// Decode parses a Raft log entry. It never panics; it errors on a missing
// frame or a checksum mismatch (ErrChecksum), on bytes that are not an
// Entry, on a version other than EntryVersion, and on a command whose type
// is unknown or whose body does not match its type (a newer leader's
// command must stop an older node, not be skipped).
func Decode(b []byte) (*fsmpb.Entry, error) {
	if len(b) < frameHeader || b[0] != frameMagic {
		return nil, fmt.Errorf("%w: no checksummed frame", errDecode)
	}
	body := b[frameHeader:]
	if binary.BigEndian.Uint32(b[1:frameHeader]) != crc32.Checksum(body, castagnoli) {
		return nil, fmt.Errorf("%w: %w", errDecode, ErrChecksum)
	}
	e := &fsmpb.Entry{}
	if err := proto.Unmarshal(body, e); err != nil {
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
	case fsmpb.CommandType_COMMAND_TYPE_PUT_SCHEDULE:
		return c.GetPutSchedule() != nil
	case fsmpb.CommandType_COMMAND_TYPE_PAUSE_SCHEDULE:
		return c.GetPauseSchedule() != nil
	case fsmpb.CommandType_COMMAND_TYPE_ENQUEUE_WORKFLOW:
		return c.GetEnqueueWorkflow() != nil
	case fsmpb.CommandType_COMMAND_TYPE_PLACE_QUEUE:
		return c.GetPlaceQueue() != nil
	case fsmpb.CommandType_COMMAND_TYPE_SEAL_QUEUE:
		return c.GetSealQueue() != nil
	case fsmpb.CommandType_COMMAND_TYPE_IMPORT_KEYS:
		return c.GetImportKeys() != nil
	case fsmpb.CommandType_COMMAND_TYPE_IMPORT_SCHEDULES:
		return c.GetImportSchedules() != nil
	case fsmpb.CommandType_COMMAND_TYPE_SET_GROUP_MEMBERS:
		return c.GetSetGroupMembers() != nil
	case fsmpb.CommandType_COMMAND_TYPE_RESUME_SCHEDULE:
		return c.GetResumeSchedule() != nil
	case fsmpb.CommandType_COMMAND_TYPE_DELETE_SCHEDULE:
		return c.GetDeleteSchedule() != nil
	case fsmpb.CommandType_COMMAND_TYPE_FIRE_SCHEDULE:
		return c.GetFireSchedule() != nil
	case fsmpb.CommandType_COMMAND_TYPE_EXPIRE_TIMEOUTS:
		return c.GetExpireTimeouts() != nil
	case fsmpb.CommandType_COMMAND_TYPE_CHECK_HASH:
		return c.GetCheckHash() != nil
	}
	return false
}
