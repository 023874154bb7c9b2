# cmake -DIN=file -DOUT=file.c -DNAME=sym -P embed.cmake: `const unsigned char NAME[]` with the
# bytes of IN, and `const size_t NAME_len`.
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUT}" "#include <stddef.h>\nconst unsigned char ${NAME}[] = {${bytes}};\nconst size_t ${NAME}_len = sizeof ${NAME};\n")
