/* link: zh_rt */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "shared/rt/log.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void limit_allows_first_line_and_holds_back_repeats(void **state)
{
    (void)state;
    struct zh_log_limit l = {0};
    unsigned long held = 99;
    assert_true(zh_log_limit_allow(&l, 200, &held));
    assert_int_equal(held, 0);
    for (int i = 0; i < 5; i++)
        assert_false(zh_log_limit_allow(&l, 200, &held));
    sleep_ms(250);
    assert_true(zh_log_limit_allow(&l, 200, &held));
    assert_int_equal(held, 5);
    assert_false(zh_log_limit_allow(&l, 200, NULL));
}

static void lines_carry_time_level_thread_and_text(void **state)
{
    (void)state;
    char path[] = "/tmp/zh-test-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(zh_log_open(path), 0);
    zh_log_set_level(ZH_LOG_INFO);
    zh_log_set_thread("t1");
    zh_info("hello %d", 42);
    zh_debug("not written at info level");
    zh_log_close();
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[512] = {0};
    assert_non_null(fgets(line, sizeof(line), f));
    assert_null(fgets(line + strlen(line), (int)(sizeof(line) - strlen(line)), f));
    fclose(f);
    unlink(path);
    /* "YYYY-MM-DD HH:MM:SS.mmm [INFO] [t1] hello 42\n" */
    assert_int_equal(line[4], '-');
    assert_int_equal(line[10], ' ');
    assert_int_equal(line[19], '.');
    assert_non_null(strstr(line, " [INFO] [t1] hello 42\n"));
}

static void level_is_clamped(void **state)
{
    (void)state;
    zh_log_set_level(99);
    assert_int_equal(zh_log_level_current, ZH_LOG_TRACE);
    zh_log_set_level(-3);
    assert_int_equal(zh_log_level_current, ZH_LOG_ERROR);
    zh_log_set_level(ZH_LOG_INFO);
}

static void escape_keeps_printable_and_hex_encodes_the_rest(void **state)
{
    (void)state;
    char out[64];
    zh_log_escape(out, sizeof(out), "ab\r\n\\\x01", 6);
    assert_string_equal(out, "ab\\x0d\\x0a\\x5c\\x01");
    char small[12];
    zh_log_escape(small, sizeof(small), "abcdefghijklmnop", 16);
    assert_non_null(strstr(small, "..."));
    assert_true(strlen(small) < sizeof(small));
}

static void open_reports_errors(void **state)
{
    (void)state;
    assert_true(zh_log_open("/nonexistent-dir/zh.log") < 0);
    assert_int_equal(zh_log_open(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(limit_allows_first_line_and_holds_back_repeats),
        cmocka_unit_test(lines_carry_time_level_thread_and_text),
        cmocka_unit_test(level_is_clamped),
        cmocka_unit_test(escape_keeps_printable_and_hex_encodes_the_rest),
        cmocka_unit_test(open_reports_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
