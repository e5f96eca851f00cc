// course - a peer of tallyd for the benchmarks: the "interactive" module of a well-known
// Go course design (the webook course), serving tally's HTTP paths.
//
//	course --listen ADDR --mysql-dsn DSN [--mysql-ca FILE] --redis-addr ADDR
//	       [--redis-password PW] --kafka-brokers HOSTS --kafka-topic T --kafka-group G
//	       [--db-max-idle N]
//
// Design: the course's layers, each in its own file: dao.go (gorm on MySQL), cache.go (a Redis
// hash per item and an "increment if the key exists" Lua script), repository.go
// (cache-aside), service.go, events.go (sarama: a sync producer and a batch consumer),
// web.go (gin). It is written to behave as the course does, not to be fast: its figures
// are what that design costs next to tallyd on the same machine. Where the course has a
// bug the obviously intended behaviour is used, and the file says so: dao.go (likes
// counted twice, unlikes never liked), cache.go (the batch consumer never updates the
// cache), repository.go (an item with no row), events.go (Consume called once, new
// groups starting at the newest offset).
//
// The course's clients keep their defaults (gorm, database/sql's pool, go-redis,
// sarama), with three exceptions, none about speed: gorm's logger is silent (the course
// sends it to its debug level), gin runs without its per-request access log (tallyd
// writes none either), and gorm's MariaDB-only RETURNING is off (see openDB).
//
// database/sql keeps 2 idle connections by default, and the course never changes it: under
// concurrent requests most MySQL queries then open a new connection (TCP and TLS) and
// close it after. The bench measures that default; --db-max-idle N shows what keeping N
// saves, and is not used by the bench.
//
// --mysql-dsn is a Go MySQL driver DSN (user:password@tcp(host:port)/db); with
// --mysql-ca the connection uses TLS, verified against that CA.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	mysqldrv "github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	glogger "gorm.io/gorm/logger"
)

type flags struct {
	listen, mysqlDSN, mysqlCA, redisAddr, redisPassword string
	kafkaBrokers, kafkaTopic, kafkaGroup                string
	dbMaxIdle                                           int
}

func parseFlags() flags {
	var f flags
	flag.StringVar(&f.listen, "listen", "127.0.0.1:8090", "HTTP listen address")
	flag.StringVar(&f.mysqlDSN, "mysql-dsn", "", "Go MySQL driver DSN: user:password@tcp(host:port)/db")
	flag.StringVar(&f.mysqlCA, "mysql-ca", "", "CA file (PEM): connect to MySQL over TLS, verified against it")
	flag.StringVar(&f.redisAddr, "redis-addr", "127.0.0.1:6379", "Redis host:port")
	flag.StringVar(&f.redisPassword, "redis-password", "", "Redis password")
	flag.StringVar(&f.kafkaBrokers, "kafka-brokers", "127.0.0.1:9092", "Kafka brokers, comma-separated")
	flag.StringVar(&f.kafkaTopic, "kafka-topic", "read_article", "topic of read events")
	flag.StringVar(&f.kafkaGroup, "kafka-group", "interactive", "consumer group")
	flag.IntVar(&f.dbMaxIdle, "db-max-idle", 0,
		"idle MySQL connections kept (0: database/sql's default, 2, as in the course)")
	flag.Parse()
	if f.mysqlDSN == "" {
		fmt.Fprintln(os.Stderr, "course: --mysql-dsn is required")
		os.Exit(2)
	}
	return f
}

// openDB opens gorm on dsn, registering a TLS config with the CA in caFile when given.
func openDB(dsn, caFile string) (*gorm.DB, error) {
	cfg, err := mysqldrv.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("no certificate in " + caFile)
		}
		err = mysqldrv.RegisterTLSConfig("course-ca", &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
		if err != nil {
			return nil, err
		}
		cfg.TLSConfig = "course-ca"
	}
	// The course runs on MySQL. On MariaDB 10.5+ gorm's driver adds RETURNING to every
	// INSERT, and RowsAffected then counts returned rows (1 for an upsert that changed
	// nothing), not affected ones; dao.go's like fix needs MySQL's count, so it is off.
	return gorm.Open(mysql.New(mysql.Config{DSN: cfg.FormatDSN(), DisableWithReturning: true}), &gorm.Config{
		Logger: glogger.Default.LogMode(glogger.Silent),
	})
}

func main() {
	f := parseFlags()
	log.SetPrefix("course: ")

	db, err := openDB(f.mysqlDSN, f.mysqlCA)
	if err != nil {
		log.Fatalf("mysql: %v", err)
	}
	if f.dbMaxIdle > 0 {
		sqlDB, err := db.DB()
		if err != nil {
			log.Fatalf("mysql: %v", err)
		}
		sqlDB.SetMaxIdleConns(f.dbMaxIdle)
	}
	d := newDAO(db)
	if err := d.migrate(); err != nil {
		log.Fatalf("mysql: migrate: %v", err)
	}

	rdb := redis.NewClient(&redis.Options{Addr: f.redisAddr, Password: f.redisPassword})
	c := newCache(rdb)
	if err := c.Load(context.Background()); err != nil {
		log.Fatalf("redis: %v", err)
	}

	kcfg := sarama.NewConfig()
	kcfg.Producer.Return.Successes = true
	kcfg.Consumer.Offsets.Initial = sarama.OffsetOldest // see events.go
	client, err := sarama.NewClient(strings.Split(f.kafkaBrokers, ","), kcfg)
	if err != nil {
		log.Fatalf("kafka: %v", err)
	}
	sp, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		log.Fatalf("kafka: producer: %v", err)
	}
	cg, err := sarama.NewConsumerGroupFromClient(f.kafkaGroup, client)
	if err != nil {
		log.Fatalf("kafka: consumer group: %v", err)
	}

	stats := &counters{}
	repo := &repository{dao: d, cache: c}
	svc := &service{repo: repo}
	rc := &readConsumer{repo: repo, stats: stats}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		runConsumer(ctx, cg, f.kafkaTopic, &batchHandler{consume: rc.Consume, stats: stats})
	}()

	w := &web{svc: svc, prod: &producer{p: sp, topic: f.kafkaTopic, stats: stats}, stats: stats}
	srv := &http.Server{Addr: f.listen, Handler: w.routes()}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Fatalf("http: %v", err)
		}
	}()

	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	// Closing the group ends the session, which commits the marked offsets. The producer
	// is left open: a read published just before may still be on its way to it.
	if err := cg.Close(); err != nil {
		log.Printf("kafka: close group: %v", err)
	}
	<-consumed
}
