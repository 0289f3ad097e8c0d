package workerd_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/raftq/raftq/workerd"
)

// The --queues flag: name:concurrency pairs.
func ExampleParseQueues() {
	qs, err := workerd.ParseQueues("default:8,reports:2,audit")
	if err != nil {
		log.Fatal(err)
	}
	for _, q := range qs {
		fmt.Println(q.Name, q.Concurrency)
	}
	// Output:
	// default 8
	// reports 2
	// audit 1
}

// Embedding the daemon: the built-in handlers plus one of your own, with
// metrics on :9102, stopped gracefully on SIGTERM.
func ExampleDaemon() {
	qs, _ := workerd.ParseQueues("default:8")
	d, err := workerd.New(workerd.Config{
		Brokers:     []string{"127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"},
		Queues:      qs,
		MetricsAddr: ":9102",
	})
	if err != nil {
		log.Fatal(err)
	}
	d.Worker.Handle("hello", workerd.Echo)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := d.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
