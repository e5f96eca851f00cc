/*
 * test_config.c - flags, environment and their validation.
 */
#include "unit.h"

#include "config.h"

static enum config_result parse(struct config *cfg, int argc, const char **argv)
{
    return config_parse(cfg, argc, (char **)argv);
}

static void defaults(void **state)
{
    struct config cfg;
    const char *argv[] = { "tallyd", NULL };
    (void)state;

    assert_int_equal(parse(&cfg, 1, argv), CONFIG_RUN);
    assert_string_equal(cfg.host, "127.0.0.1");
    assert_int_equal(cfg.port, 8080);
    assert_string_equal(cfg.store, "sqlite:tally.db");
    assert_string_equal(cfg.cache, "none");
    assert_string_equal(cfg.bus, "local");
    assert_int_equal(cfg.batch, 10000);
    assert_int_equal(cfg.flush_ms, 100);
}

static void flag_beats_environment(void **state)
{
    struct config cfg;
    const char *argv[] = { "tallyd", "--batch", "7", "--listen", "[::1]:0", NULL };
    (void)state;

    setenv("TALLY_BATCH", "9", 1);
    setenv("TALLY_FLUSH_MS", "250", 1);
    assert_int_equal(parse(&cfg, 5, argv), CONFIG_RUN);
    assert_int_equal(cfg.batch, 7);
    assert_int_equal(cfg.flush_ms, 250);
    assert_string_equal(cfg.host, "::1");
    assert_int_equal(cfg.port, 0);
    unsetenv("TALLY_BATCH");
    unsetenv("TALLY_FLUSH_MS");
}

static void bad_values_are_usage_errors(void **state)
{
    static const char *const bad[][3] = {
        { "--listen", "8080" },      { "--listen", "127.0.0.1:99999" },
        { "--listen", ":80" },       { "--store", "postgres://x" },
        { "--store", "sqlite:" },    { "--cache", "memcached://x" },
        { "--bus", "nats://x" },     { "--batch", "0" },
        { "--batch", "-5" },         { "--flush-ms", "1.5" },
        { "--threads", "1000" },     { "--nope", "1" },
    };
    struct config cfg;
    (void)state;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *argv[] = { "tallyd", bad[i][0], bad[i][1], NULL };
        if (parse(&cfg, 3, argv) != CONFIG_EXIT_USAGE)
            fail_msg("%s %s was accepted", bad[i][0], bad[i][1]);
    }
    setenv("TALLY_STORE", "mysql:nope", 1);
    {
        const char *argv[] = { "tallyd", NULL };
        assert_int_equal(parse(&cfg, 1, argv), CONFIG_EXIT_USAGE);
    }
    unsetenv("TALLY_STORE");
    {
        const char *argv[] = { "tallyd", "extra", NULL };
        assert_int_equal(parse(&cfg, 2, argv), CONFIG_EXIT_USAGE);
    }
}

static void stop_timeout_from_flag_or_environment(void **state)
{
    struct config cfg;
    const char *plain[] = { "tallyd", NULL };
    const char *flag[] = { "tallyd", "--stop-timeout-ms", "250", NULL };
    const char *zero[] = { "tallyd", "--stop-timeout-ms", "0", NULL };
    (void)state;

    assert_int_equal(parse(&cfg, 1, plain), CONFIG_RUN);
    assert_int_equal(cfg.stop_timeout_ms, 10000);
    setenv("TALLY_STOP_TIMEOUT_MS", "1500", 1);
    assert_int_equal(parse(&cfg, 1, plain), CONFIG_RUN);
    assert_int_equal(cfg.stop_timeout_ms, 1500);
    assert_int_equal(parse(&cfg, 3, flag), CONFIG_RUN);
    assert_int_equal(cfg.stop_timeout_ms, 250);
    unsetenv("TALLY_STOP_TIMEOUT_MS");
    assert_int_equal(parse(&cfg, 3, zero), CONFIG_EXIT_USAGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(flag_beats_environment),
        cmocka_unit_test(bad_values_are_usage_errors),
        cmocka_unit_test(stop_timeout_from_flag_or_environment),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
