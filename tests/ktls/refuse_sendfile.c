/* Fault injection for make check-ktls (LD_PRELOAD): sendfile(2) fails with
 * EINVAL, as it does for a file on a file system the kernel cannot splice
 * from, so that the way back from SSL_sendfile to copying is tested.
 * OpenSSL's SSL_sendfile calls sendfile through the C library. */
#include <errno.h>
#include <sys/types.h>

ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count);
ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count);

ssize_t sendfile(int out_fd, int in_fd, off_t *offset, size_t count)
{
	errno = EINVAL;
	return -1;
}

ssize_t sendfile64(int out_fd, int in_fd, off_t *offset, size_t count)
{
	return sendfile(out_fd, in_fd, offset, count);
}
