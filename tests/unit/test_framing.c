/*
 * test_framing.c - the RFC 9112 rules tally checks itself, table-driven: transfer
 * coding lists, line ends fed in every split, OWS trimming and tokens.
 */
#include "unit.h"

#include "http/framing.h"

struct coding_case {
    const char *list;
    int status; /* 0: accepted */
};

static const struct coding_case coding_cases[] = {
    {"chunked", 0},
    {"Chunked", 0},
    {" chunked\t", 0},
    {", ,chunked", 0},  /* empty list elements are allowed */
    {"chunked, ", 0},
    {"", 400},          /* no coding at all */
    {" , ", 400},
    {"gzip", 400},      /* the length of the body cannot be known */
    {"chunked, gzip", 400},
    {"chunked,chunked", 400},
    {"chunked;x=1", 400}, /* chunked has no parameters; a coding is a bare token here */
    {"chunk ed", 400},
    {"gzip, chunked", 501}, /* a coding tally does not implement */
    {"x-custom,chunked", 501},
};

static void transfer_coding_lists(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(coding_cases) / sizeof(coding_cases[0]); i++) {
        const struct coding_case *tc = &coding_cases[i];
        const char *why = NULL;
        int got = framing_transfer_coding(tc->list, strlen(tc->list), &why);

        if (got != tc->status)
            fail_msg("'%s': %d, want %d", tc->list, got, tc->status);
        if (got && (!why || !*why))
            fail_msg("'%s': refused without a reason", tc->list);
    }
}

struct lines_case {
    const char *in;
    bool ok;
};

static const struct lines_case lines_cases[] = {
    {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true},
    {"\r\nGET / HTTP/1.1\r\n\r\n", true},
    {"2;a=b\r\n", true},
    {"X: a b\t\r\n", true}, /* whitespace inside or at the end of a line */
    {"GET / HTTP/1.1\n", false},
    {"X: a\n\r\n", false},
    {"\n", false},
    {"2;a\nb\r\n", false},
    {"X: a\rY: b\r\n", false},
    {"2\r\r\n", false},
    {"X: a\r\n b\r\n", false}, /* obsolete line folding */
    {"X: a\r\n\tb\r\n", false},
    {"GET / HTTP/1.1\r\n Host: x\r\n", false},
};

/* The same verdict whatever the pieces the bytes arrive in. */
static void line_ends_in_any_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(lines_cases) / sizeof(lines_cases[0]); i++) {
        const struct lines_case *tc = &lines_cases[i];
        size_t len = strlen(tc->in);

        for (size_t cut = 0; cut <= len; cut++) {
            struct framing_lines fl;
            const char *why;

            framing_lines_reset(&fl);
            why = framing_lines_feed(&fl, tc->in, cut);
            if (!why)
                why = framing_lines_feed(&fl, tc->in + cut, len - cut);
            if ((why == NULL) != tc->ok)
                fail_msg("case %zu split at %zu: %s", i, cut, why ? why : "accepted");
        }
    }
}

/* A reset between runs forgets a pending CR or line start: content came between them. */
static void reset_between_content(void **state)
{
    struct framing_lines fl;

    (void)state;
    framing_lines_reset(&fl);
    assert_null(framing_lines_feed(&fl, "2\r\n", 3));
    framing_lines_reset(&fl); /* chunk data " x" was content */
    assert_null(framing_lines_feed(&fl, "\r\n0\r\n\r\n", 7));
    framing_lines_reset(&fl);
    assert_null(framing_lines_feed(&fl, "1\r", 2));
    assert_non_null(framing_lines_feed(&fl, "x", 1)); /* without a reset the CR is bare */
}

static void trims_ows_at_both_ends_only(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"abc", "abc"},   {" abc", "abc"}, {"abc\t", "abc"}, {" \t a b \t ", "a b"},
        {" \t ", ""},     {"", ""},        {"a\t\tb", "a\t\tb"},
        {"\rabc\r", "\rabc\r"}, /* only SP and HTAB are optional whitespace */
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *s = cases[i].in;
        size_t len = strlen(s);

        framing_trim_ows(&s, &len);
        if (len != strlen(cases[i].want) || memcmp(s, cases[i].want, len) != 0)
            fail_msg("'%s' trimmed to '%.*s'", cases[i].in, (int)len, s);
    }
}

static void token_length(void **state)
{
    (void)state;
    assert_int_equal(framing_token_len("Content-Length", 14), 14);
    assert_int_equal(framing_token_len("Content-Length ", 15), 14);
    assert_int_equal(framing_token_len("X!#$%&'*+-.^_`|~9", 17), 17);
    assert_int_equal(framing_token_len("a:b", 3), 1);
    assert_int_equal(framing_token_len("\tx", 2), 0);
    assert_int_equal(framing_token_len("a\0b", 3), 1);
    assert_int_equal(framing_token_len("", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(transfer_coding_lists),
        cmocka_unit_test(line_ends_in_any_split),
        cmocka_unit_test(reset_between_content),
        cmocka_unit_test(trims_ows_at_both_ends_only),
        cmocka_unit_test(token_length),
    };
    return cmocka_run_group_tests_name("framing", tests, NULL, NULL);
}
