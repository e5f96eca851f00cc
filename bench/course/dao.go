// dao.go - the course's MySQL layer: three tables, gorm upserts.
//
// Design: one row per item in interactives, unique on (biz_id, biz), created by the first
// write that touches the item: every counter write is an INSERT ... ON DUPLICATE KEY
// UPDATE cnt = cnt + 1 (gorm's clause.OnConflict without columns, which is MySQL's
// form). A like is a row in user_like_bizs with a status (1 active, 0 cancelled: a
// soft delete), written in the same transaction as the like_cnt change. A collection
// is a row in user_collection_bizs; "collected" is whether that row exists.
//
// Two course bugs are fixed here, where the course counts without looking at what the
// like row did:
//   - InsertLikeInfo: the course upserts the like row and then always adds 1 to
//     like_cnt, so liking twice counts twice. Here the upsert leaves an active row
//     untouched (utime too), so MySQL reports 0 affected rows for it, and like_cnt moves
//     only on an insert (1) or a 0 -> 1 reactivation (2).
//   - DeleteLikeInfo: the course always subtracts 1, so unliking an item never liked
//     (or unliking twice) drives like_cnt down, even below zero. Here only a row that was
//     active (status = 1) and is now cancelled moves like_cnt.
//
// A *dao is shared by every goroutine: gorm.DB is safe for concurrent use and holds the
// database/sql pool (the course leaves the pool at its defaults, and so does this).
package main

import (
	"context"
	"errors"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// Interactive is an item's counters: interactives(id, biz_id, biz, read_cnt, like_cnt,
// collect_cnt, utime, ctime), times in ms since the epoch.
type Interactive struct {
	Id         int64  `gorm:"primaryKey;autoIncrement"`
	BizId      int64  `gorm:"uniqueIndex:biz_type_id"`
	Biz        string `gorm:"type:varchar(128);uniqueIndex:biz_type_id"`
	ReadCnt    int64
	LikeCnt    int64
	CollectCnt int64
	Utime      int64
	Ctime      int64
}

// UserLikeBiz is one user's like of one item; Status 1 is active, 0 cancelled.
type UserLikeBiz struct {
	Id     int64  `gorm:"primaryKey;autoIncrement"`
	Uid    int64  `gorm:"uniqueIndex:uid_biz_type_id"`
	BizId  int64  `gorm:"uniqueIndex:uid_biz_type_id"`
	Biz    string `gorm:"type:varchar(128);uniqueIndex:uid_biz_type_id"`
	Status int
	Utime  int64
	Ctime  int64
}

// UserCollectionBiz is one item in one user's collection (folder) cid.
type UserCollectionBiz struct {
	Id    int64  `gorm:"primaryKey;autoIncrement"`
	Uid   int64  `gorm:"uniqueIndex:uid_biz_type_id"`
	Cid   int64  `gorm:"index"`
	BizId int64  `gorm:"uniqueIndex:uid_biz_type_id"`
	Biz   string `gorm:"type:varchar(128);uniqueIndex:uid_biz_type_id"`
	Utime int64
	Ctime int64
}

var errRecordNotFound = gorm.ErrRecordNotFound

type dao struct {
	db *gorm.DB
}

func newDAO(db *gorm.DB) *dao { return &dao{db: db} }

// migrate creates the tables, as the course's dao.InitTables does.
func (d *dao) migrate() error {
	return d.db.AutoMigrate(&Interactive{}, &UserLikeBiz{}, &UserCollectionBiz{})
}

// IncrReadCnt is the course's upsert: insert the item with read_cnt 1, or add 1.
func (d *dao) IncrReadCnt(ctx context.Context, biz string, bizId int64) error {
	now := time.Now().UnixMilli()
	return d.db.WithContext(ctx).Clauses(clause.OnConflict{
		DoUpdates: clause.Assignments(map[string]any{
			"read_cnt": gorm.Expr("`read_cnt` + 1"),
			"utime":    now,
		}),
	}).Create(&Interactive{Biz: biz, BizId: bizId, ReadCnt: 1, Ctime: now, Utime: now}).Error
}

// BatchIncrReadCnt runs one IncrReadCnt per event in a single transaction: the course's
// batch, which saves the commits, not the statements.
func (d *dao) BatchIncrReadCnt(ctx context.Context, bizs []string, ids []int64) error {
	return d.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		txDAO := newDAO(tx)
		for i := range bizs {
			if err := txDAO.IncrReadCnt(ctx, bizs[i], ids[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// InsertLikeInfo likes (biz, bizId) for uid; changed is false when it was already liked.
func (d *dao) InsertLikeInfo(ctx context.Context, biz string, bizId, uid int64) (changed bool, err error) {
	now := time.Now().UnixMilli()
	err = d.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// Fix (see the file's head): utime is assigned before status, so its IF still sees
		// the old status; an active row is left as it was and counts 0 affected rows.
		res := tx.Clauses(clause.OnConflict{
			DoUpdates: clause.Set{
				{Column: clause.Column{Name: "utime"}, Value: gorm.Expr("IF(`status` = 1, `utime`, ?)", now)},
				{Column: clause.Column{Name: "status"}, Value: 1},
			},
		}).Create(&UserLikeBiz{Uid: uid, Biz: biz, BizId: bizId, Status: 1, Utime: now, Ctime: now})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return nil
		}
		changed = true
		return tx.Clauses(clause.OnConflict{
			DoUpdates: clause.Assignments(map[string]any{
				"like_cnt": gorm.Expr("`like_cnt` + 1"),
				"utime":    now,
			}),
		}).Create(&Interactive{Biz: biz, BizId: bizId, LikeCnt: 1, Ctime: now, Utime: now}).Error
	})
	return changed && err == nil, err
}

// DeleteLikeInfo cancels uid's like; changed is false when there was no active like.
func (d *dao) DeleteLikeInfo(ctx context.Context, biz string, bizId, uid int64) (changed bool, err error) {
	now := time.Now().UnixMilli()
	err = d.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// Fix (see the file's head): only an active like is cancelled and counted down.
		res := tx.Model(&UserLikeBiz{}).
			Where("uid = ? AND biz_id = ? AND biz = ? AND status = ?", uid, bizId, biz, 1).
			Updates(map[string]any{"utime": now, "status": 0})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return nil
		}
		changed = true
		return tx.Model(&Interactive{}).
			Where("biz = ? AND biz_id = ?", biz, bizId).
			Updates(map[string]any{"like_cnt": gorm.Expr("`like_cnt` - 1"), "utime": now}).Error
	})
	return changed && err == nil, err
}

// Get reads one item's row; errRecordNotFound when it has none.
func (d *dao) Get(ctx context.Context, biz string, bizId int64) (Interactive, error) {
	var res Interactive
	err := d.db.WithContext(ctx).Where("biz = ? AND biz_id = ?", biz, bizId).First(&res).Error
	return res, err
}

// GetByIds reads the rows of those of ids that have one, in no particular order.
func (d *dao) GetByIds(ctx context.Context, biz string, ids []int64) ([]Interactive, error) {
	var res []Interactive
	err := d.db.WithContext(ctx).Where("biz = ? AND biz_id IN ?", biz, ids).Find(&res).Error
	return res, err
}

// GetLikeInfo finds uid's active like of the item; errRecordNotFound when there is none.
func (d *dao) GetLikeInfo(ctx context.Context, biz string, bizId, uid int64) (UserLikeBiz, error) {
	var res UserLikeBiz
	err := d.db.WithContext(ctx).
		Where("biz = ? AND biz_id = ? AND uid = ? AND status = ?", biz, bizId, uid, 1).
		First(&res).Error
	return res, err
}

// GetCollectInfo finds the item in uid's collections; errRecordNotFound when it is not.
func (d *dao) GetCollectInfo(ctx context.Context, biz string, bizId, uid int64) (UserCollectionBiz, error) {
	var res UserCollectionBiz
	err := d.db.WithContext(ctx).
		Where("biz = ? AND biz_id = ? AND uid = ?", biz, bizId, uid).
		First(&res).Error
	return res, err
}

func isNotFound(err error) bool { return errors.Is(err, errRecordNotFound) }
