/* zhttpd-doc: writes zhttpd(8) and docs/configuration.md from daemon/config.c's option table, the
 * table --help prints, so the three cannot drift apart.
 *
 *   zhttpd-doc man TEMPLATE VERSION      roff on stdout (packaging/zhttpd.8.in)
 *   zhttpd-doc markdown TEMPLATE         markdown on stdout (packaging/configuration.md.in)
 *
 * The template is copied through, with a line "@OPTIONS@" replaced by every command-line flag
 * (grouped as --help groups them), a line "@KEYS@" by every config key (per section) and
 * "@VERSION@" by VERSION. Built by CMake (target zhttpd-doc); the build writes zhttpd.8 with it,
 * and scripts/gen-docs.sh writes docs/configuration.md (a test checks the committed copy). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/config.h"
#include "shared/proto/buf.h"

enum fmt { MAN, MD };

/* Text for a roff body line: \ -> \e, - -> \-, a leading . or ' guarded, \x01 -> \~ */
static void roff(FILE *out, const char *s)
{
    if (*s == '.' || *s == '\'')
        fputs("\\&", out);
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\e", out);
        else if (*s == '-')
            fputs("\\-", out);
        else if (*s == '\x01')
            fputs("\\ ", out);
        else
            fputc(*s, out);
    }
}

/* Text for a markdown table cell: | escaped, \x01 -> space */
static void md(FILE *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else if (*s == '\x01')
            fputc(' ', out);
        else
            fputc(*s, out);
    }
}

static void options(FILE *out, enum fmt f)
{
    struct zh_config_doc d;
    for (int g = 0; g < 3; g++) {
        bool first = true;
        for (size_t i = 0; zh_config_doc_entry(i, &d, NULL, NULL) == 0; i++) {
            if (!d.flag || d.group != g)
                continue;
            struct zh_buf help = {0};
            zh_config_doc_entry(i, &d, &help, NULL);
            if (first && f == MAN)
                fprintf(out, ".SS %s\n", d.group_title);
            if (first && f == MD)
                fprintf(out, "\n### %s\n\n| Flag | Config key | Meaning |\n|---|---|---|\n",
                        d.group_title);
            first = false;
            if (f == MAN) {
                fputs(".TP\n", out);
                /* the tag line: bold flag, then " ARG" in italics */
                if (d.short_flag)
                    fprintf(out, ".BR \\-%c \", \" \\-\\-", d.short_flag);
                else
                    fputs(d.arg ? ".BI \\-\\-" : ".B \\-\\-", out);
                roff(out, d.flag);
                if (d.arg) {
                    fputs(" \" ", out);
                    roff(out, d.arg);
                    fputc('"', out);
                }
                fputc('\n', out);
                roff(out, zh_buf_cstr(&help));
                fputc('\n', out);
            } else {
                fputs("| ", out);
                if (d.short_flag)
                    fprintf(out, "`-%c`, ", d.short_flag);
                fprintf(out, "`--%s", d.flag);
                if (d.arg)
                    fprintf(out, " %s", d.arg);
                fputs("` | ", out);
                if (d.key)
                    fprintf(out, "`%s` [%s]", d.key,
                            d.in_general && d.in_server ? "both"
                            : d.in_general              ? "General"
                                                        : "server");
                else
                    fputs("—", out);
                fputs(" | ", out);
                md(out, zh_buf_cstr(&help));
                fputs(" |\n", out);
            }
            zh_buf_free(&help);
        }
    }
}

static void keys(FILE *out, enum fmt f)
{
    struct zh_config_doc d;
    for (int sec = 0; sec < 2; sec++) {
        const char *name = sec == 0 ? "General" : "server";
        if (f == MAN)
            fprintf(out, ".SS [%s]\n", name);
        else
            fprintf(out, "\n### [%s]\n\n| Key | Meaning |\n|---|---|\n", name);
        for (size_t i = 0; zh_config_doc_entry(i, &d, NULL, NULL) == 0; i++) {
            if (!d.key || !(sec == 0 ? d.in_general : d.in_server))
                continue;
            struct zh_buf help = {0};
            zh_config_doc_entry(i, &d, NULL, &help);
            if (f == MAN) {
                fputs(".TP\n.BI ", out);
                roff(out, d.key);
                fputs("= ", out);
                roff(out, d.key_arg);
                fputc('\n', out);
                roff(out, zh_buf_cstr(&help));
                fputc('\n', out);
            } else {
                fprintf(out, "| `%s=", d.key);
                md(out, d.key_arg);
                fputs("` | ", out);
                md(out, zh_buf_cstr(&help));
                fputs(" |\n", out);
            }
            zh_buf_free(&help);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "man") != 0 && strcmp(argv[1], "markdown") != 0)) {
        fputs("usage: zhttpd-doc man TEMPLATE VERSION | zhttpd-doc markdown TEMPLATE\n", stderr);
        return 2;
    }
    enum fmt f = strcmp(argv[1], "man") == 0 ? MAN : MD;
    const char *version = argc > 3 ? argv[3] : ZH_VERSION;
    FILE *in = fopen(argv[2], "r");
    if (!in) {
        perror(argv[2]);
        return 1;
    }
    char line[4096];
    while (fgets(line, sizeof(line), in)) {
        if (strcmp(line, "@OPTIONS@\n") == 0) {
            options(stdout, f);
            continue;
        }
        if (strcmp(line, "@KEYS@\n") == 0) {
            keys(stdout, f);
            continue;
        }
        for (const char *p = line; *p;) {
            const char *v = strstr(p, "@VERSION@");
            if (!v) {
                fputs(p, stdout);
                break;
            }
            fwrite(p, 1, (size_t)(v - p), stdout);
            fputs(version, stdout);
            p = v + strlen("@VERSION@");
        }
    }
    int bad = ferror(in);
    fclose(in);
    if (bad || fflush(stdout) != 0) {
        fputs("zhttpd-doc: read or write error\n", stderr);
        return 1;
    }
    return 0;
}
