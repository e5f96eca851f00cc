// Package tally is a Go client for tally's HTTP API, the service that counts reads, likes
// and collections of any item (biz, id).
//
// The client follows the contract in docs/openapi.yaml of the tally repository: one method
// per operation, named after its operationId (getItem is [Client.GetItem], recordRead is
// [Client.RecordRead], ...), and one struct per schema, with the schema's field names as
// JSON tags. It uses the standard library only.
//
//	c, err := tally.New("http://127.0.0.1:8080", tally.WithToken(apiKey))
//	_, err = c.RecordRead(ctx, "article", 7, &tally.RecordReadRequest{UID: 42})
//	st, err := c.Like(ctx, 42, "article", 7)
//
// # Context
//
// Every method takes a [context.Context] first. Its deadline and cancellation bound the
// whole call, retries and the waits between them included: a wait that would end after the
// deadline is not started, and the call ends at once with an error holding both
// [context.DeadlineExceeded] and the last attempt's error.
//
// # Errors
//
// An answer other than 2xx is a [*Error] carrying the HTTP status, the API's error code
// (one of the Code constants) and message, the Retry-After of a 429 and the request's
// X-Request-Id; find it with [errors.As]. Other failures (the network, the context) are
// returned wrapped, so [errors.Is] finds [context.DeadlineExceeded] and the like.
//
// # Retries
//
// What is retried: a transport error (no answer, or an answer cut off), 408, 429 and every
// 5xx but 501 and 505, up to [RetryPolicy.MaxAttempts] attempts in all, waiting between
// them an exponential backoff with jitter or, when the answer has a Retry-After, that long
// and a little more (a Retry-After over [RetryPolicy.MaxRetryAfter] ends the call).
// No other answer is retried: another 4xx would only come again.
//
// Which operations: all of them but the probes, because each is safe to repeat.
//   - GETs change nothing.
//   - RecordRead (POST .../reads) sends an Idempotency-Key header, the same on every attempt
//     of one call: the caller's ([RecordReadRequest.IdempotencyKey]) or, without one, 128
//     random bits from crypto/rand made once per call. tallyd counts a key once within 24
//     hours, so a read whose answer was lost and is sent again is counted once.
//   - Like, Unlike, Collect and Uncollect (PUT and DELETE) are idempotent in the contract:
//     a repeat leaves the same state and the counts move only on a real change. The one
//     thing a retry can do is land after another call for the same user and item that was
//     made meanwhile (an unlike between a lost like's attempts is undone by its retry); a
//     caller that issues such calls concurrently should turn retries off
//     ([WithRetry]([NoRetry])).
//   - GetHealth, GetLiveness and GetReadiness are asked once: a probe's answer is the
//     state it reports, not something to wait out.
package tally
