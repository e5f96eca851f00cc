// web.go - tally's HTTP routes on gin, over the course's service.
//
// The paths, JSON and statuses are tally's (docs/openapi.yaml), so that the bench's wrk
// scripts drive tallyd and this peer alike; only what the bench uses is served. A like or
// unlike answers the item's state for the user, as tally does: the course's handler
// answers "OK", so the state is the service's Get after the write.
package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

var bizRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)

type web struct {
	svc   *service
	prod  *producer
	stats *counters
}

func fail(c *gin.Context, status int, code, msg string) {
	c.AbortWithStatusJSON(status, gin.H{"error": gin.H{"code": code, "message": msg}})
}

func parseId(s string) (int64, bool) {
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0
}

// item reads biz and id from the path; false when it has answered 400.
func item(c *gin.Context) (string, int64, bool) {
	biz := c.Param("biz")
	id, ok := parseId(c.Param("id"))
	if !bizRe.MatchString(biz) || !ok {
		fail(c, http.StatusBadRequest, "invalid_argument", "bad biz or id")
		return "", 0, false
	}
	return biz, id, true
}

// uidQuery reads ?uid= (0 when absent); false when it has answered 400.
func uidQuery(c *gin.Context) (int64, bool) {
	s, present := c.GetQuery("uid")
	if !present {
		return 0, true
	}
	uid, ok := parseId(s)
	if !ok {
		fail(c, http.StatusBadRequest, "invalid_argument", "bad uid")
	}
	return uid, ok
}

func internal(c *gin.Context, err error) {
	_ = c.Error(err)
	fail(c, http.StatusInternalServerError, "internal", "internal error")
}

func (w *web) getItem(c *gin.Context) {
	biz, id, ok := item(c)
	if !ok {
		return
	}
	uid, ok := uidQuery(c)
	if !ok {
		return
	}
	st, err := w.svc.Get(c.Request.Context(), biz, id, uid)
	if err != nil {
		internal(c, err)
		return
	}
	c.JSON(http.StatusOK, st)
}

func (w *web) getItems(c *gin.Context) {
	biz := c.Param("biz")
	if !bizRe.MatchString(biz) {
		fail(c, http.StatusBadRequest, "invalid_argument", "bad biz")
		return
	}
	parts := strings.Split(c.Query("ids"), ",")
	if len(parts) > 100 {
		fail(c, http.StatusBadRequest, "invalid_argument", "1 to 100 ids")
		return
	}
	ids := make([]int64, len(parts))
	for i, p := range parts {
		var ok bool
		if ids[i], ok = parseId(p); !ok {
			fail(c, http.StatusBadRequest, "invalid_argument", "bad ids")
			return
		}
	}
	uid, ok := uidQuery(c)
	if !ok {
		return
	}
	states, err := w.svc.GetByIds(c.Request.Context(), biz, ids, uid)
	if err != nil {
		internal(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"items": states})
}

func (w *web) like(c *gin.Context) {
	uid, ok := parseId(c.Param("uid"))
	if !ok {
		fail(c, http.StatusBadRequest, "invalid_argument", "bad uid")
		return
	}
	biz, id, ok := item(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	var err error
	if c.Request.Method == http.MethodPut {
		err = w.svc.Like(ctx, biz, id, uid)
	} else {
		err = w.svc.CancelLike(ctx, biz, id, uid)
	}
	if err != nil {
		internal(c, err)
		return
	}
	st, err := w.svc.Get(ctx, biz, id, uid)
	if err != nil {
		internal(c, err)
		return
	}
	c.JSON(http.StatusOK, st)
}

func (w *web) read(c *gin.Context) {
	biz, id, ok := item(c)
	if !ok {
		return
	}
	var body struct {
		Uid int64 `json:"uid"`
	}
	if c.Request.ContentLength != 0 {
		if err := c.ShouldBindJSON(&body); err != nil || body.Uid < 0 {
			fail(c, http.StatusBadRequest, "invalid_argument", "bad body")
			return
		}
	}
	w.prod.Publish(readEvent{Biz: biz, Id: id, Uid: body.Uid})
	c.JSON(http.StatusAccepted, gin.H{"accepted": true})
}

// metrics serves the consumer's counters in Prometheus's text format, for the bench.
func (w *web) metrics(c *gin.Context) {
	c.String(http.StatusOK, fmt.Sprintf(
		"course_read_events_applied_total %d\ncourse_read_events_lost_total %d\n"+
			"course_read_events_skipped_total %d\ncourse_read_events_produce_failed_total %d\n",
		w.stats.applied.Load(), w.stats.lost.Load(), w.stats.skipped.Load(),
		w.stats.produceFailed.Load()))
}

func (w *web) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/metrics", w.metrics)
	r.GET("/v1/items/:biz", w.getItems)
	r.GET("/v1/items/:biz/:id", w.getItem)
	r.POST("/v1/items/:biz/:id/reads", w.read)
	r.PUT("/v1/users/:uid/likes/:biz/:id", w.like)
	r.DELETE("/v1/users/:uid/likes/:biz/:id", w.like)
	return r
}
