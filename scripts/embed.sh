#!/bin/sh
# Turns a text file into a C string constant: embed.sh FILE NAME > out.h
set -e
printf 'static const char %s[] =\n' "$2"
sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/\t"/' -e 's/$/\\n"/' "$1"
printf ';\n'
