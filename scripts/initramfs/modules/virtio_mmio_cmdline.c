// SPDX-License-Identifier: GPL-2.0
/*
 * virtio_mmio_cmdline: creates "virtio-mmio" platform devices from module parameters.
 *
 * Debian builds its kernel without CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, so the stock
 * virtio_mmio driver only learns about devices from ACPI or a device tree. airlock's VMM
 * announces its devices on the kernel command line instead; the test initramfs's /init loads
 * this module after virtio_mmio.ko with every virtio_mmio.device= value it finds there:
 *
 *   insmod virtio_mmio_cmdline.ko device=4K@0xd0000000:5 device=4K@0xd0001000:6
 *
 * Syntax of one value: <size>@<base>:<irq>[:<id>] (size and base take K/M/G suffixes),
 * the same as the upstream kernel option. The stock driver then binds to each device.
 */
#include <linux/init.h>
#include <linux/ioport.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/platform_device.h>

#define MAX_DEVICES 32

struct mmio_device_spec {
	unsigned long long base;
	unsigned long long size;
	unsigned int irq;
	int id;
};

static struct mmio_device_spec specs[MAX_DEVICES];
static struct platform_device *devices[MAX_DEVICES];
static unsigned int spec_count;

/* Parses one value; registration waits for module init so a bad value fails the load. */
static int parse_device(const char *val, const struct kernel_param *kp)
{
	struct mmio_device_spec spec = { .id = PLATFORM_DEVID_AUTO };
	char *end;
	int consumed = 0;

	if (spec_count >= MAX_DEVICES)
		return -ENOSPC;
	spec.size = memparse(val, &end);
	if (end == val || *end != '@' || spec.size == 0)
		return -EINVAL;
	val = end + 1;
	spec.base = memparse(val, &end);
	if (end == val || *end != ':')
		return -EINVAL;
	val = end + 1;
	if (sscanf(val, "%u%n", &spec.irq, &consumed) != 1 || spec.irq == 0)
		return -EINVAL;
	val += consumed;
	if (*val == ':') {
		val++;
		if (sscanf(val, "%d%n", &spec.id, &consumed) != 1 || spec.id < 0)
			return -EINVAL;
		val += consumed;
	}
	if (*val != '\0' && *val != '\n')
		return -EINVAL;
	if (spec.base + spec.size < spec.base)
		return -EINVAL;
	specs[spec_count++] = spec;
	return 0;
}

static const struct kernel_param_ops device_ops = {
	.set = parse_device,
};
module_param_cb(device, &device_ops, NULL, 0);
MODULE_PARM_DESC(device, "virtio-mmio device <size>@<base>:<irq>[:<id>] (repeatable)");

static void unregister_all(unsigned int count)
{
	while (count > 0)
		platform_device_unregister(devices[--count]);
}

static int __init virtio_mmio_cmdline_init(void)
{
	unsigned int i;

	for (i = 0; i < spec_count; i++) {
		struct resource res[2] = {
			DEFINE_RES_MEM(specs[i].base, specs[i].size),
			DEFINE_RES_IRQ(specs[i].irq),
		};

		devices[i] = platform_device_register_resndata(NULL, "virtio-mmio", specs[i].id,
							       res, ARRAY_SIZE(res), NULL, 0);
		if (IS_ERR(devices[i])) {
			int err = PTR_ERR(devices[i]);

			pr_err("virtio_mmio_cmdline: device %u at %#llx: error %d\n", i,
			       specs[i].base, err);
			unregister_all(i);
			return err;
		}
	}
	pr_info("virtio_mmio_cmdline: %u device(s)\n", spec_count);
	return 0;
}

static void __exit virtio_mmio_cmdline_exit(void)
{
	unregister_all(spec_count);
}

module_init(virtio_mmio_cmdline_init);
module_exit(virtio_mmio_cmdline_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("virtio-mmio devices from module parameters (airlock test initramfs)");
