package control

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
)

// Workerd is one workerd process (the worker daemon), run on the host
// side against every node, storing results in svcd before it acks.
type Workerd struct {
	ID   string
	args []string
	log  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// AddWorkerds provisions n workerd processes working queue with the given
// concurrency each (they start with StartWorkerd).
func (c *Cluster) AddWorkerds(bin string, n, concurrency int, queue string) {
	dir := filepath.Join(c.opts.Dir, "workerd")
	_ = os.MkdirAll(dir, 0o755)
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("wd%d", i)
		c.Workerds = append(c.Workerds, &Workerd{ID: id, log: filepath.Join(dir, id+".log"), args: []string{bin,
			"--brokers", strings.Join(c.Addrs(), ","), "--queues", fmt.Sprintf("%s:%d", queue, concurrency),
			"--svcd", c.SvcdAddr, "--worker-id", id, "--poll-wait", "1s", "--lease-duration", "2s",
			"--shutdown-timeout", "5s", "--log-level", "warn"}})
	}
}

// StartWorkerd starts w unless it runs.
func (c *Cluster) StartWorkerd(w *Workerd) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(w.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(w.args[0], w.args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	done := make(chan struct{})
	w.cmd, w.done = cmd, done
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(logf, "==== jepsen: %s exited: %v\n", w.ID, err)
		logf.Close()
		w.mu.Lock()
		if w.cmd == cmd {
			w.cmd = nil
		}
		w.mu.Unlock()
		close(done)
	}()
	return nil
}

// KillWorkerd SIGKILLs w (a crash anywhere, between the result write and
// the ack included) and waits for it to be gone.
func (c *Cluster) KillWorkerd(w *Workerd) {
	w.mu.Lock()
	cmd, done := w.cmd, w.done
	w.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}
