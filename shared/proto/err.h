/* zhttpd error codes: negative errno values, plus protocol errors errno can't express.
 *
 * Functions return 0 (or a positive count) on success and a negative code on failure. zh_strerror()
 * names either kind. */
#ifndef ZH_SHARED_PROTO_ERR_H
#define ZH_SHARED_PROTO_ERR_H

/* XX(name, value, text) — values sit far below any errno. */
#define ZH_ERR_MAP(XX)                                  \
    XX(ZH_E_PARSE, -10001, "malformed input")           \
    XX(ZH_E_INCOMPLETE, -10002, "incomplete input")     \
    XX(ZH_E_TOO_DEEP, -10003, "nesting too deep")       \
    XX(ZH_E_TOO_LARGE, -10004, "value too large")       \
    XX(ZH_E_TYPE, -10005, "wrong type")                 \
    XX(ZH_E_MISSING, -10006, "required field missing")  \
    XX(ZH_E_SEQ, -10007, "sequence number mismatch")    \
    XX(ZH_E_CREDITS, -10008, "credits exceeded")        \
    XX(ZH_E_UNKNOWN_SESSION, -10009, "unknown session") \
    XX(ZH_E_CONFIG, -10010, "bad configuration")        \
    XX(ZH_E_FULL, -10011, "queue full")                 \
    XX(ZH_E_LOCKED, -10012, "already in use by another process")

enum zh_err {
#define ZH_ERR_ENUM(name, value, text) name = value,
    ZH_ERR_MAP(ZH_ERR_ENUM)
#undef ZH_ERR_ENUM
};

/* Describe a negative zhttpd or errno code. Never returns NULL. */
const char *zh_strerror(int err);

#endif
