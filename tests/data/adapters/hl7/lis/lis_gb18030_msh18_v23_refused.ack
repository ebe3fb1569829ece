MSH|^~\&|HR-ADAPTER|REGION|LIS|HOSP_A|20251112110000+0800||ACK^R01^ACK|ACK20251112110000000001|P|2.3||||||GB 18030-2000
MSA|AE|G23-0002|OBR-3 (segment 2): give each OBR its own report number (or put all its OBX under|||205^OBR-3 (segment 2): give each OBR its own report number (or put all its OBX under one OBR^HL70357
ERR|OBR^2^3^205&OBR-3 (segment 2): give each OBR its own report number (or p&HL70357
