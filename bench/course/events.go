// events.go - read events on Kafka with sarama: the course's sync producer and its batch
// consumer.
//
// Design: POST .../reads publishes one event and answers at once: the course's article service
// calls ProduceReadEvent in a new goroutine and does not wait for it, so a read the
// broker refuses is only logged. The event carries tally's wire format, {"biz","id",
// "uid"} (the course's is {"Aid","Uid"} with biz fixed to "article"), so that the same
// topic, written by tally-produce, drives tallyd and this peer alike.
//
// The consumer is the course's batch handler: per partition, collect up to batchSize
// messages or whatever came within batchDuration, hand them to consume, then mark the
// last offset (sarama commits marked offsets every second). consume runs the batch as
// one MySQL transaction of upserts under a 10 s timeout; when it fails the course logs
// it and moves on, so those reads are lost: they are counted in
//
//	course_read_events_lost_total, not retried. An undecodable message is skipped, as in
//
// the course.
//
// Two departures from the course, each its evident intent:
//   - the course calls ConsumerGroup.Consume once; sarama returns from it at every
//     rebalance and says to call it in a loop, which is done here;
//   - a new group starts at the oldest offset (sarama's default is the newest, which
//     would skip every event written before the first start: the bench produces first).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

const (
	batchSize     = 10
	batchDuration = time.Second
	batchTimeout  = 10 * time.Second
)

// readEvent is one read, as tally's producers write it.
type readEvent struct {
	Biz string `json:"biz"`
	Id  int64  `json:"id"`
	Uid int64  `json:"uid,omitempty"`
}

// counters are served on /metrics; touched by any goroutine, hence atomics.
type counters struct {
	applied, lost, skipped, produceFailed atomic.Int64
}

type producer struct {
	p     sarama.SyncProducer
	topic string
	stats *counters
}

func (p *producer) ProduceReadEvent(evt readEvent) error {
	val, err := json.Marshal(evt)
	if err != nil {
		return err
	}
	_, _, err = p.p.SendMessage(&sarama.ProducerMessage{Topic: p.topic, Value: sarama.ByteEncoder(val)})
	return err
}

// Publish sends evt from a goroutine of its own and returns at once, as the course does.
func (p *producer) Publish(evt readEvent) {
	go func() {
		if err := p.ProduceReadEvent(evt); err != nil {
			p.stats.produceFailed.Add(1)
			log.Printf("produce read event: %v", err)
		}
	}()
}

// batchHandler is a sarama.ConsumerGroupHandler; sarama runs ConsumeClaim in one
// goroutine per claimed partition, all sharing consume.
type batchHandler struct {
	consume func(msgs []*sarama.ConsumerMessage, evts []readEvent) error
	stats   *counters
}

func (b *batchHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (b *batchHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (b *batchHandler) ConsumeClaim(session sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	msgs := claim.Messages()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), batchDuration)
		var last *sarama.ConsumerMessage
		batch := make([]*sarama.ConsumerMessage, 0, batchSize)
		evts := make([]readEvent, 0, batchSize)
		done := false
		for i := 0; i < batchSize && !done; i++ {
			select {
			case <-ctx.Done():
				done = true
			case msg, ok := <-msgs:
				if !ok {
					cancel()
					return nil
				}
				last = msg
				var evt readEvent
				if err := json.Unmarshal(msg.Value, &evt); err != nil {
					b.stats.skipped.Add(1)
					log.Printf("undecodable message at %s/%d/%d: %v", msg.Topic, msg.Partition,
						msg.Offset, err)
					continue
				}
				batch = append(batch, msg)
				evts = append(evts, evt)
			}
		}
		cancel()
		if len(batch) > 0 {
			if err := b.consume(batch, evts); err != nil {
				log.Printf("batch up to %s/%d/%d: %v", last.Topic, last.Partition, last.Offset, err)
			}
		}
		if last != nil {
			session.MarkMessage(last, "")
		}
	}
}

type readConsumer struct {
	repo  *repository
	stats *counters
}

// Consume is the batch's business step; not idempotent (a replayed batch counts again).
func (r *readConsumer) Consume(msgs []*sarama.ConsumerMessage, evts []readEvent) error {
	bizs := make([]string, 0, len(evts))
	ids := make([]int64, 0, len(evts))
	for _, e := range evts {
		bizs = append(bizs, e.Biz)
		ids = append(ids, e.Id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	committed, err := r.repo.BatchIncrReadCnt(ctx, bizs, ids)
	if committed {
		r.stats.applied.Add(int64(len(evts)))
	} else {
		r.stats.lost.Add(int64(len(evts)))
	}
	if err != nil {
		log.Printf("batch read_cnt of %d events (committed %v): %v", len(evts), committed, err)
	}
	return nil
}

// runConsumer consumes topic as group until ctx ends.
func runConsumer(ctx context.Context, cg sarama.ConsumerGroup, topic string, h sarama.ConsumerGroupHandler) {
	for ctx.Err() == nil {
		if err := cg.Consume(ctx, []string{topic}, h); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				return
			}
			log.Printf("consumer group: %v", err)
			time.Sleep(time.Second)
		}
	}
}
