"""Writes minimal.dtb, the device-tree fixture of boot_information.rs: python3 make_minimal_dtb.py minimal.dtb (qemu.dtb is the same blob after QEMU 10 -M raspi3b,dumpdtb=qemu.dtb -dtb minimal.dtb)."""
import struct, sys
strings = bytearray(); offsets = {}
def name_offset(name):
    if name not in offsets:
        offsets[name] = len(strings); strings.extend(name.encode() + b'\0')
    return offsets[name]
body = bytearray()
def pad():
    while len(body) % 4: body.append(0)
def begin(name):
    body.extend(struct.pack('>I', 1)); body.extend(name.encode() + b'\0'); pad()
def end(): body.extend(struct.pack('>I', 2))
def prop(name, value):
    body.extend(struct.pack('>III', 3, len(value), name_offset(name))); body.extend(value); pad()
cells = lambda *v: b''.join(struct.pack('>I', x) for x in v)
begin(''); prop('#address-cells', cells(1)); prop('#size-cells', cells(1)); prop('model', b'test pi\0')
begin('chosen'); prop('bootargs', b'ktest from-dtb\0'); end()
begin('memory@0'); prop('device_type', b'memory\0'); prop('reg', cells(0, 0x3b400000)); end()
begin('reserved-memory'); prop('#address-cells', cells(1)); prop('#size-cells', cells(1)); prop('ranges', b'')
begin('firmware@1000000'); prop('reg', cells(0x1000000, 0x10000)); end(); end()
end(); body.extend(struct.pack('>I', 9))
reserve = struct.pack('>QQ', 0x2000000, 0x4000) + struct.pack('>QQ', 0, 0)
header_size = 40
off_reserve = header_size; off_struct = off_reserve + len(reserve); off_strings = off_struct + len(body)
total = off_strings + len(strings)
header = struct.pack('>10I', 0xd00dfeed, total, off_struct, off_strings, off_reserve, 17, 16, 0, len(strings), len(body))
open(sys.argv[1], 'wb').write(header + reserve + body + strings)
