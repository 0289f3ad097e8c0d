// Command workflow is the workflow example: a producer submits a diamond
// (fetch → {resize, thumbnail} → publish) in one atomic Enqueue, and a
// worker runs it; each child reads its parents' results from the results
// service (svcd). Run it against `make run` (brokers on 127.0.0.1:7101..3,
// svcd on 127.0.0.1:7400):
//
//	go run ./examples/workflow
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/raftq/raftq/client"
	raftqv1 "github.com/raftq/raftq/proto/raftq/v1"
	"github.com/raftq/raftq/results"
	"github.com/raftq/raftq/worker"
	"github.com/raftq/raftq/workerd"
)

func main() {
	brokers := flag.String("brokers", "127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103", "broker addresses")
	svcd := flag.String("svcd", "127.0.0.1:7400", "results service address")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, strings.Split(*brokers, ","), *svcd, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run submits the diamond, works it until publish has run, and prints
// each step's output and publish's parents.
func run(ctx context.Context, brokers []string, svcd string, out io.Writer) error {
	cl, err := client.New(brokers, client.Options{})
	if err != nil {
		return err
	}
	defer cl.Close()
	res, err := cl.Enqueue(ctx,
		client.NewJob("media", "fetch", []byte("cat.jpg"), client.WithName("fetch")),
		client.NewJob("media", "resize", nil, client.WithName("resize"), client.DependsOnNames("fetch")),
		client.NewJob("media", "thumbnail", nil, client.WithName("thumb"), client.DependsOnNames("fetch")),
		client.NewJob("media", "publish", nil, client.DependsOnNames("resize", "thumb")),
	)
	if err != nil {
		return err // a cycle or an unknown parent is InvalidArgument; nothing was created
	}
	publish := res[3].JobId

	rc, err := results.Dial(svcd)
	if err != nil {
		return err
	}
	defer rc.Close()
	done := make(chan struct{})
	w := worker.New(cl, worker.Options{Queues: []worker.QueueConfig{{Name: "media", Concurrency: 2}},
		// Each attempt's output goes to svcd before the ack.
		Recorder: workerd.ResultsRecorder{Client: rc}})
	step := func(ctx context.Context, job *worker.Job) error {
		// A child reads what its parents stored (job.Parents all
		// succeeded, unless it was enqueued with RunAnyway).
		parents, err := rc.ParentResults(ctx, job.Parents)
		if err != nil {
			return err
		}
		var in []string
		for _, id := range job.Parents {
			in = append(in, string(parents[id].Output))
		}
		result := fmt.Sprintf("%s(%s%s)", job.Type, job.Payload, strings.Join(in, ","))
		job.SetOutput([]byte(result))
		fmt.Fprintln(out, result)
		if job.ID == publish {
			close(done)
		}
		return nil
	}
	for _, typ := range []string{"fetch", "resize", "thumbnail", "publish"} {
		w.Handle(typ, step)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go w.Run(wctx)
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("the workflow did not finish: %w", ctx.Err())
	}
	j, err := cl.GetJob(ctx, publish, raftqv1.Consistency_CONSISTENCY_LINEARIZABLE)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "publish's parents:", len(j.Parents))
	return nil
}
