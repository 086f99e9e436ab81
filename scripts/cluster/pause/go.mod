module kitbuild/pause

go 1.22
