// service.go - the course's service: an item's state for a user.
//
// Get reads the counters through the repository, then asks MySQL for liked and collected
// at the same time (the course's errgroup; a WaitGroup here, to need no other module).
// Without a uid there is no user to ask about, so neither query runs. The course has no
// list form of liked/collected: GetByIds with a uid asks them item by item, as a caller of
// its service would.
package main

import (
	"context"
	"sync"
)

type service struct {
	repo *repository
}

// itemState is what tally answers for an item (docs/openapi.yaml, ItemState).
type itemState struct {
	Biz        string `json:"biz"`
	Id         int64  `json:"id"`
	ReadCnt    int64  `json:"read_cnt"`
	LikeCnt    int64  `json:"like_cnt"`
	CollectCnt int64  `json:"collect_cnt"`
	Liked      bool   `json:"liked"`
	Collected  bool   `json:"collected"`
}

func stateOf(intr Interactive, biz string, id int64) itemState {
	return itemState{Biz: biz, Id: id, ReadCnt: intr.ReadCnt, LikeCnt: intr.LikeCnt,
		CollectCnt: intr.CollectCnt}
}

// Get is one item's state; uid 0 means no user.
func (s *service) Get(ctx context.Context, biz string, id, uid int64) (itemState, error) {
	intr, err := s.repo.Get(ctx, biz, id)
	if err != nil {
		return itemState{}, err
	}
	st := stateOf(intr, biz, id)
	if uid == 0 {
		return st, nil
	}
	var wg sync.WaitGroup
	var likedErr, collectedErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		st.Liked, likedErr = s.repo.Liked(ctx, biz, id, uid)
	}()
	go func() {
		defer wg.Done()
		st.Collected, collectedErr = s.repo.Collected(ctx, biz, id, uid)
	}()
	wg.Wait()
	if likedErr != nil {
		return itemState{}, likedErr
	}
	if collectedErr != nil {
		return itemState{}, collectedErr
	}
	return st, nil
}

// GetByIds is the states of ids, in their order (duplicates too); uid 0 means no user.
func (s *service) GetByIds(ctx context.Context, biz string, ids []int64, uid int64) ([]itemState, error) {
	rows, err := s.repo.GetByIds(ctx, biz, ids)
	if err != nil {
		return nil, err
	}
	byId := make(map[int64]Interactive, len(rows))
	for _, r := range rows {
		byId[r.BizId] = r
	}
	out := make([]itemState, len(ids))
	for i, id := range ids {
		out[i] = stateOf(byId[id], biz, id)
		if uid == 0 {
			continue
		}
		if out[i].Liked, err = s.repo.Liked(ctx, biz, id, uid); err != nil {
			return nil, err
		}
		if out[i].Collected, err = s.repo.Collected(ctx, biz, id, uid); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *service) Like(ctx context.Context, biz string, id, uid int64) error {
	return s.repo.IncrLike(ctx, biz, id, uid)
}

func (s *service) CancelLike(ctx context.Context, biz string, id, uid int64) error {
	return s.repo.DecrLike(ctx, biz, id, uid)
}
