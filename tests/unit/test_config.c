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
    config_release(&cfg);
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
    config_release(&cfg);
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
        { "--rate-limit", "key=10/x" }, { "--rate-limit", "key=10/s:0" },
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

/* Writes len bytes into a fresh file under $TMPDIR; returns "@PATH" (caller frees). */
static char *url_file(const char *data, size_t len)
{
    char *path = unit_temp_db(), *arg = malloc(strlen(path) + 2);
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    arg[0] = '@';
    memcpy(arg + 1, path, strlen(path) + 1);
    free(path);
    return arg;
}

static void urls_from_files(void **state)
{
#define URL "mysql://tally:pw%40x@127.0.0.1:3306/tally?ssl=1"
    static const char url[] = URL, with_newlines[] = URL "\r\n\n";
    struct config cfg;
    char *ok = url_file(with_newlines, sizeof(with_newlines) - 1), *empty = url_file("\n", 1);
    char *nul = url_file("sqlite:a\0b", 10);
    const char *argv[] = { "tallyd", "--store", ok, "--cache", "none", NULL };
    (void)state;

    assert_int_equal(parse(&cfg, 5, argv), CONFIG_RUN);
    assert_string_equal(cfg.store, url);
    assert_string_equal(cfg.store_url.password, "pw@x");
    assert_string_equal(url_option(&cfg.store_url, "ssl"), "1");
    config_release(&cfg);
    setenv("TALLY_BUS", ok, 1); /* a variable takes @PATH too; this file is no bus */
    assert_int_equal(parse(&cfg, 1, argv), CONFIG_EXIT_USAGE);
    unsetenv("TALLY_BUS");
    for (const char *const *bad = (const char *const[]){ empty, nul, "@/nonexistent/url", "@", NULL };
         *bad; bad++) {
        const char *args[] = { "tallyd", "--cache", *bad, NULL };
        if (parse(&cfg, 3, args) != CONFIG_EXIT_USAGE)
            fail_msg("--cache %s was accepted", *bad);
    }
    for (char **f = (char *[]){ ok, empty, nul, NULL }; *f; f++) {
        unlink(*f + 1);
        free(*f);
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
    config_release(&cfg);
    setenv("TALLY_STOP_TIMEOUT_MS", "1500", 1);
    assert_int_equal(parse(&cfg, 1, plain), CONFIG_RUN);
    assert_int_equal(cfg.stop_timeout_ms, 1500);
    config_release(&cfg);
    assert_int_equal(parse(&cfg, 3, flag), CONFIG_RUN);
    assert_int_equal(cfg.stop_timeout_ms, 250);
    config_release(&cfg);
    unsetenv("TALLY_STOP_TIMEOUT_MS");
    assert_int_equal(parse(&cfg, 3, zero), CONFIG_EXIT_USAGE);
}

/*
 * The test clock is a test's: its variable alone stops tallyd (usage error), and no variable
 * sets --test-clock; with the flag, the offset is read, either sign, ten years at most.
 */
static void test_clock_needs_its_flag(void **state)
{
    static const struct {
        const char *value;
        enum config_result without, with;
        int64_t offset;
    } cases[] = {
        {"", CONFIG_RUN, CONFIG_RUN, 0},
        {"0", CONFIG_EXIT_USAGE, CONFIG_RUN, 0},
        {"34560000000", CONFIG_EXIT_USAGE, CONFIG_RUN, 34560000000},
        {"-1800000", CONFIG_EXIT_USAGE, CONFIG_RUN, -1800000},
        {"315360000000", CONFIG_EXIT_USAGE, CONFIG_RUN, 315360000000},
        {"315360000001", CONFIG_EXIT_USAGE, CONFIG_EXIT_USAGE, 0},
        {"5x", CONFIG_EXIT_USAGE, CONFIG_EXIT_USAGE, 0},
        {"--1", CONFIG_EXIT_USAGE, CONFIG_EXIT_USAGE, 0},
    };
    struct config cfg;
    const char *plain[] = { "tallyd", NULL };
    const char *flag[] = { "tallyd", "--test-clock", NULL };
    (void)state;

    assert_int_equal(parse(&cfg, 1, plain), CONFIG_RUN);
    assert_false(cfg.test_clock);
    assert_int_equal(cfg.test_clock_offset_ms, 0);
    config_release(&cfg);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        setenv("TALLY_TEST_CLOCK_OFFSET_MS", cases[i].value, 1);
        if (parse(&cfg, 1, plain) != cases[i].without)
            fail_msg("'%s' without --test-clock", cases[i].value);
        config_release(&cfg);
        if (parse(&cfg, 2, flag) != cases[i].with)
            fail_msg("'%s' with --test-clock", cases[i].value);
        if (cases[i].with == CONFIG_RUN)
            assert_true(cfg.test_clock && cfg.test_clock_offset_ms == cases[i].offset);
        config_release(&cfg);
    }
    setenv("TALLY_TEST_CLOCK", "1", 1); /* a variable of the flag's name does nothing */
    setenv("TALLY_TEST_CLOCK_OFFSET_MS", "1", 1);
    assert_int_equal(parse(&cfg, 1, plain), CONFIG_EXIT_USAGE);
    unsetenv("TALLY_TEST_CLOCK");
    unsetenv("TALLY_TEST_CLOCK_OFFSET_MS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(flag_beats_environment),
        cmocka_unit_test(bad_values_are_usage_errors),
        cmocka_unit_test(urls_from_files),
        cmocka_unit_test(stop_timeout_from_flag_or_environment),
        cmocka_unit_test(test_clock_needs_its_flag),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
