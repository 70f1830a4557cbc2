# The always-on warning set of STYLE.md (after curl's PickyWarnings.cmake).
set(ZH_WARNINGS
    -Wall -Wextra -Wpedantic
    -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wmissing-declarations -Wold-style-definition
    -Wpointer-arith -Wcast-align -Wcast-qual -Wwrite-strings -Wundef -Wvla
    -Wformat=2 -Wimplicit-fallthrough -Wredundant-decls -Wdouble-promotion -Wnull-dereference)
add_compile_options(${ZH_WARNINGS})
if(ZH_WERROR)
    add_compile_options(-Werror)
endif()
