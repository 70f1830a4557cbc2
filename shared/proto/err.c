#include "shared/proto/err.h"

#include <string.h>

const char *zh_strerror(int err)
{
    switch (err) {
#define ZH_ERR_CASE(name, value, text) \
    case name:                         \
        return text;
        ZH_ERR_MAP(ZH_ERR_CASE)
#undef ZH_ERR_CASE
    default:
        break;
    }
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}
