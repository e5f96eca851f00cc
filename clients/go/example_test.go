package tally_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	tally "github.com/tally/tally/clients/go"
)

// A content site's backend: a user reads an article and likes it, then a page of articles
// is shown with that user's flags. TALLY_URL is where tallyd serves (for example
// http://127.0.0.1:8080) and TALLY_TOKEN an API key with the read and write scopes, if
// tallyd runs with --keys.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tally.New(os.Getenv("TALLY_URL"), tally.WithToken(os.Getenv("TALLY_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}

	// Counted once even if the answer is lost and the client sends it again: every attempt
	// carries the same Idempotency-Key.
	if _, err := c.RecordRead(ctx, "article", 7, &tally.RecordReadRequest{UID: 42}); err != nil {
		log.Fatal(err)
	}

	st, err := c.Like(ctx, 42, "article", 7) // idempotent: a repeat changes nothing
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("liked:", st.Liked)

	page, err := c.GetItems(ctx, "article", []int64{7, 8}, 42)
	if err != nil {
		log.Fatal(err)
	}
	for _, it := range page.Items {
		fmt.Printf("article %d: liked=%v collected=%v\n", it.ID, it.Liked, it.Collected)
	}

	// tallyd's refusals are *tally.Error.
	_, err = c.GetItem(ctx, "Not-A-Biz", 1, 0)
	var e *tally.Error
	if errors.As(err, &e) {
		fmt.Println(e.StatusCode, e.Code)
	}
	// Output:
	// liked: true
	// article 7: liked=true collected=false
	// article 8: liked=false collected=false
	// 400 invalid_argument
}
